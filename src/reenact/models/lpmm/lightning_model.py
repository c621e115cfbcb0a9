"""LPMM as one Lightning module (``reenact fit --model lpmm --model.backbone_ckpt LIA.ckpt``).

Lee et al., "LPMM: Intuitive Pose Control for Neural Talking-Head Model via Landmark-Parameter Morphable
Model", 2023. One ``fit`` runs the paper's stages in order:

1. **basis** (Sec. 3.1, Eq. 1): at fit start, PCA of the training split's annotated landmarks
   (:class:`~reenact.models.lpmm.pca.LandmarkPCA`), stored in the model's buffers;
2. **regressor** (Sec. 3.2): ``regressor_steps`` batches training the MobileNetV2 LP-regressor with the l1
   landmark loss;
3. **adaptor** (Sec. 3.3, Eq. 2-4): ``adaptor_steps`` batches training the LP-adaptor with ``L_rgb`` and
   ``L_pose-reg`` against the frozen backbone (a trained LIA) and the frozen regressor. At its first step the
   mean pose latent ``v_bar`` is computed from ``latent_mean_frames`` training frames and the fixed identity
   image is taken from the training set (item ``identity_index``); both are buffers.

Every stage's state (basis, ``v_bar``, identity, weights, optimiser states, ``global_step``) is in the
checkpoint, so ``--ckpt_path last.ckpt`` resumes inside whichever stage was interrupted. Each batch makes
exactly one optimiser step, so ``global_step`` counts batches and decides the stage.

DDP: the two stages train different modules, so a backward pass leaves the other stage's parameters without
gradient, which DDP's reducer rejects unless ``find_unused_parameters``. Backward therefore runs without the
reducer (``block_backward_sync``) and the trained module's gradients (and the regressor's BatchNorm statistics)
are averaged over processes explicitly.

Generation (``animate``): driving frame -> regressor -> adaptor -> backbone with the source's identity;
relative mode moves in parameter space, ``p_t = p_src + p_drv_t - p_drv_0`` (our choice; the paper only
uses absolute driving).
"""

from __future__ import annotations

import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torchmetrics import MeanMetric

from reenact.data.datasets import SamplingSpec
from reenact.evaluation.loop import batch_protocol
from reenact.metrics import EXPRESSION_TRANSFER, FRONTALISATION, SAME_IDENTITY
from reenact.models.base import ReenactmentModule
from reenact.models.lpmm import control
from reenact.models.lpmm.adaptor import BACKBONES, LPAdaptor, pose_regularisation, rgb_loss
from reenact.models.lpmm.pca import NUM_LANDMARKS, LandmarkPCA, align_landmarks, nme
from reenact.models.lpmm.posemap import PoseMap
from reenact.models.lpmm.regressor import LPRegressor, landmark_l1_loss
from reenact.nn.optim import adam
from reenact.training.distributed import all_reduce_mean_, backward_without_reducer

#: The command that makes the backbone LPMM needs, quoted in the error when none is given.
BACKBONE_HINT = (
    "LPMM drives a trained LIA backbone. Train one first:\n"
    "    reenact fit --model lia --preset {preset}\n"
    "then pass its checkpoint:\n"
    "    reenact fit --model lpmm --preset {preset} --model.backbone_ckpt runs/lia/version_0/checkpoints/last.ckpt\n"
    "(the released official LIA file `vox.pt` works too at 256 px: --preset paper --model.backbone_ckpt vox.pt)"
)


class MissingBackboneError(SystemExit):
    """``fit`` without a backbone checkpoint. A ``SystemExit`` so the command line prints the message (with
    the command that trains the backbone) instead of a traceback, before any training step runs."""


def default_backbone_config(backbone: str, image_size: int) -> dict[str, Any]:
    """Architecture of the backbone when neither a checkpoint nor a config is given (LIA's tiny preset sizes)."""
    if backbone != "lia":
        raise ValueError(f"unknown LPMM backbone {backbone!r}; known: {', '.join(BACKBONES)}")
    return {"size": image_size, "style_dim": 128, "motion_dim": 20, "channel_base": 1024, "channel_max": 128}


def read_backbone_checkpoint(path: str | Path) -> tuple[str, dict[str, Any], dict[str, torch.Tensor]]:
    """``(backbone name, generator config, generator state dict)`` from a reenact LIA checkpoint or the released
    official LIA file (generator under ``"gen"``); read with ``weights_only=True``."""
    from reenact.models.lia.official import OFFICIAL_CONFIG, generator_state_dict, read_official

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone checkpoint {path} not found")
    checkpoint = read_official(path)  # weights_only=True (argparse.Namespace allowed for official files)
    info = checkpoint.get("reenact")
    if isinstance(info, dict) and "model" in info:
        name = info["model"]
        if name not in BACKBONES:
            raise ValueError(f"{path} holds a {name!r} model; LPMM backbones: {', '.join(BACKBONES)}")
        from reenact.models.lia.lightning_model import LIA
        from reenact.models.lia.torch_model import LIAConfig

        # Checkpoints written before LIA's `generator` section hold its fields flat: upgraded first.
        hp = LIA.upgrade_hyper_parameters(dict(checkpoint.get("hyper_parameters") or {}))
        config = {"size": hp["image_size"], **asdict(LIAConfig.coerce(hp.get("generator")))}
        state = {k[len("generator."):]: v for k, v in checkpoint["state_dict"].items() if k.startswith("generator.")}
        return name, config, state
    return "lia", dict(OFFICIAL_CONFIG), generator_state_dict(checkpoint)


class LPMM(ReenactmentModule):
    """Landmark-parameter morphable model driving a frozen latent talking-head backbone.

    Args:
        image_size: frame side; must equal the backbone's.
        backbone: backbone name (``"lia"``).
        backbone_ckpt: trained backbone checkpoint (reenact LIA ``.ckpt`` or the official ``vox.pt``); required
            by ``fit``. Its weights are copied into this model, so LPMM checkpoints are self-contained (the
            path is not needed to reload them).
        backbone_config: backbone architecture when no checkpoint is given (``None``: LIA's tiny sizes); with
            a checkpoint, the checkpoint's architecture is used and stored here.
        num_params: ``k`` LPMM parameters (paper default 40; 1..136).
        regressor_arch: timm MobileNetV2 variant (paper ``mobilenetv2_100``), built with ``pretrained=False``.
        adaptor_hidden: width of the adaptor MLP's two hidden layers.
        regressor_steps, adaptor_steps: batches of the regressor and adaptor stages.
        regressor_lr, adaptor_lr: Adam learning rates.
        rgb_weight, pose_reg_weight: ``lambda_rgb``, ``lambda_pose-reg`` of Eq. 2.
        latent_mean_frames: training frames averaged for ``v_bar``.
        basis_max_frames: at most this many annotated frames (evenly spread) for the PCA; ``None``: all.
        identity_index: training item whose source frame is the adaptor's fixed identity.
    """

    registry_name = "lpmm"
    train_sampling = SamplingSpec(mode="pair", num_source=1, num_driving=1)
    #: Expression transfer only (:func:`reenact.models.lpmm.control.transfer_expression`): the parameters mix
    #: pose and expression and hold no head angles, so absolute poses (frontalisation) cannot be set.
    supports_editing = True

    def __init__(self, image_size: int = 64, backbone: str = "lia", backbone_ckpt: str | None = None,
                 backbone_config: dict[str, Any] | None = None, num_params: int = 40,
                 regressor_arch: str = "mobilenetv2_100", adaptor_hidden: int = 256, regressor_steps: int = 200,
                 adaptor_steps: int = 200, regressor_lr: float = 1e-3, adaptor_lr: float = 1e-3,
                 rgb_weight: float = 1.0, pose_reg_weight: float = 1.0, latent_mean_frames: int = 256,
                 basis_max_frames: int | None = None, identity_index: int = 0) -> None:
        super().__init__(image_size=image_size)
        self.save_hyperparameters()
        self.automatic_optimization = False
        state = None
        self.backbone_source = backbone_ckpt
        if backbone_ckpt is not None:
            name, backbone_config, state = read_backbone_checkpoint(backbone_ckpt)
            if name != backbone:
                raise ValueError(f"{backbone_ckpt} holds a {name!r} backbone, not {backbone!r}")
        elif backbone_config is None:
            backbone_config = default_backbone_config(backbone, image_size)
        if backbone not in BACKBONES:
            raise ValueError(f"unknown LPMM backbone {backbone!r}; known: {', '.join(BACKBONES)}")
        self.backbone = BACKBONES[backbone](dict(backbone_config))
        if self.backbone.image_size != image_size:
            raise ValueError(f"the backbone works at {self.backbone.image_size} px but image_size is {image_size}; "
                             f"set --model.image_size {self.backbone.image_size}")
        if state is not None:
            self.backbone.generator.load_state_dict(state, strict=True)
        # Reloading this model needs the architecture, not the file: the weights travel in the state dict.
        self.hparams["backbone_config"] = dict(backbone_config)
        self.hparams["backbone_ckpt"] = None
        self.pca = LandmarkPCA(num_params)
        self.pose_map = PoseMap(num_params)  # head angles <-> parameters, fitted with the basis
        self.regressor = LPRegressor(num_params, regressor_arch)
        self.adaptor = LPAdaptor(num_params, self.backbone.pose_dim, adaptor_hidden)
        self.register_buffer("identity_image", torch.zeros(1, 3, image_size, image_size))
        self.register_buffer("identity_ready", torch.tensor(False))
        self.val_nme = MeanMetric()
        self.test_nme = MeanMetric()
        #: :meth:`adaptor_constants` kept during the adaptor stage (recomputed after a restart or preparation).
        self._adaptor_cache: tuple[Any, torch.Tensor] | None = None

    # --------------------------------------------------------------------------------------- pipeline
    def params_from_image(self, image: torch.Tensor) -> torch.Tensor:
        """LP-regressor ``F``: ``[B, 3, H, W]`` in ``[0, 1]`` -> ``p [B, k]``."""
        return self.regressor(image)

    def latent_from_params(self, params: torch.Tensor) -> torch.Tensor:
        """LP-adaptor ``D``: ``p [B, k]`` -> pose latent ``v_hat [B, w]``."""
        return self.adaptor(params)

    def render(self, identity_image: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Backbone ``G``: the identity of ``identity_image [1 or B, 3, H, W]`` with ``pose [B, w]`` -> images."""
        return self.backbone.generate(self.backbone.encode_identity(identity_image), pose)

    def landmarks_from_params(self, params: torch.Tensor, centre: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 1 in pixels: ``p [..., k]`` -> ``[..., 68, 2]`` (centred on the frame unless ``centre``)."""
        return self.pca.to_points(self.pca.reconstruct(params), self.image_size, centre)

    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, relative: bool = False) -> torch.Tensor:
        """Driving image -> regressor -> adaptor -> backbone with the source identity.

        ``source [B, S, 3, H, W]`` (first frame), ``driving [B, T, 3, H, W]`` in ``[0, 1]`` -> ``[B, T, 3, H, W]``.
        """
        if driving.dim() != 5:
            raise ValueError(f"driving must be [B, T, 3, H, W], got {tuple(driving.shape)}")
        batch, frames = driving.shape[:2]
        identity = self.backbone.encode_identity(source[:, 0])
        params = self.params_from_image(driving.flatten(0, 1)).view(batch, frames, -1)
        if relative:
            params = params - params[:, :1] + self.params_from_image(source[:, 0])[:, None]
        poses = self.latent_from_params(params.flatten(0, 1)).view(batch, frames, -1)
        return torch.stack([self.backbone.generate(identity, poses[:, t]) for t in range(frames)], 1)

    @property
    def editing_tasks(self) -> tuple[str, ...]:  # type: ignore[override]
        """Expression transfer always; frontalisation once the pose map is fitted (:mod:`.posemap`)."""
        return (EXPRESSION_TRANSFER, FRONTALISATION) if bool(self.pose_map.fitted) else (EXPRESSION_TRANSFER,)

    def edit_image(self, source: torch.Tensor, *, head_pose: torch.Tensor | None = None,
                   expression_from: torch.Tensor | None = None) -> torch.Tensor:
        """The shared editing interface on ``source [B, 3, H, W]``: expression transfer from ``expression_from``
        (:func:`~reenact.models.lpmm.control.transfer_expression`) and/or the head pose set to ``head_pose [B, 3]``
        degrees through the pose map (:class:`~reenact.models.lpmm.posemap.PoseMap`; raises
        :class:`~reenact.models.lpmm.posemap.PoseNotFittedError` without one)."""
        if head_pose is None:
            return control.transfer_expression(self, source, source if expression_from is None else expression_from)
        return control.set_head_pose(self, source, head_pose, expression_from=expression_from)

    # ------------------------------------------------------------------------------------------ stages
    def stage(self, step: int | None = None) -> str:
        """``"regressor"``, ``"adaptor"`` or ``"done"`` at ``step`` (default: the trainer's ``global_step``)."""
        step = self.global_step if step is None else step
        if step < self.hparams.regressor_steps:
            return "regressor"
        if step < self.hparams.regressor_steps + self.hparams.adaptor_steps:
            return "adaptor"
        return "done"

    def regressor_losses(self, images: torch.Tensor, landmarks: torch.Tensor,
                         detected: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Sec. 3.2: l1 between Eq. 1's reconstruction of ``F(images)`` and the landmarks ``[B, 68, 2]``, over the
        frames ``detected [B]`` marks (all by default; a frame without a detected face has no target). Every
        frame still passes through ``F``, so BatchNorm and the DDP gradient average see the same batch shape."""
        params = self.params_from_image(images)
        if detected is not None:
            detected = detected.bool()
            if not bool(detected.any()):
                zero = params.sum() * 0.0
                return {"regressor_l1": zero, "nme": zero.detach(), "total": zero}
            params, landmarks = params[detected], landmarks[detected]
        loss = landmark_l1_loss(params, landmarks, self.pca, self.image_size)
        with torch.no_grad():
            predicted = self.pca.reconstruct(params).unflatten(-1, (NUM_LANDMARKS, 2))
            target = align_landmarks(landmarks.to(params.dtype), self.image_size).unflatten(-1, (NUM_LANDMARKS, 2))
            error = 100.0 * nme(predicted, target).mean()  # percent of the inter-ocular distance (Table 1)
        return {"regressor_l1": loss, "nme": error, "total": loss}

    @torch.no_grad()
    def adaptor_constants(self) -> tuple[Any, torch.Tensor]:
        """What Eq. 3-4 need from the frozen parts that does not depend on the batch: the fixed identity
        ``E_id(identity_image)`` and ``F(G(v_bar))``, the parameters of the mean-pose image."""
        identity = self.backbone.encode_identity(self.identity_image)
        base_image = self.backbone.generate(identity, self.adaptor.latent_mean[None].to(self.identity_image.dtype))
        return identity, self.params_from_image(base_image)

    def adaptor_losses(self, images: torch.Tensor, constants: tuple[Any, torch.Tensor] | None = None
                       ) -> dict[str, torch.Tensor]:
        """Eq. 2-4 on ``images [B, 3, H, W]`` with the fixed identity; only the adaptor gets gradients.

        ``constants``: :meth:`adaptor_constants`, when the caller keeps them over steps (the training loop does:
        backbone, regressor, identity and ``v_bar`` are frozen during the adaptor stage); ``None`` computes them.
        """
        hp = self.hparams
        identity, base_params = self.adaptor_constants() if constants is None else constants
        with torch.no_grad():
            params = self.params_from_image(images)
            target_pose = self.backbone.encode_pose(images)
        losses = {"rgb": rgb_loss(self.backbone, identity, self.adaptor(params), target_pose),
                  "pose_reg": pose_regularisation(self.adaptor, base_params)}
        losses["total"] = hp.rgb_weight * losses["rgb"] + hp.pose_reg_weight * losses["pose_reg"]
        return losses

    # ------------------------------------------------------------------------------------ preparation
    def on_fit_start(self) -> None:
        # Runs after a resumed checkpoint is restored and before any step. A resumed run carries the backbone
        # weights in its checkpoint (the CLI rebuilds the model from the checkpoint's hyper-parameters, whose
        # backbone_ckpt is None), so only a fresh run needs --model.backbone_ckpt.
        if self.backbone_source is None and self.trainer.ckpt_path is None:
            preset = "paper" if self.image_size >= 256 else "tiny"
            raise MissingBackboneError("reenact fit --model lpmm: no backbone checkpoint (--model.backbone_ckpt).\n"
                                       + BACKBONE_HINT.format(preset=preset))
        # After a resume the restored buffers already hold the basis; it is a pure function of the data anyway.
        # (A model given a fitted basis and plain dataloaders, without the DataModule, keeps its pose map as is.)
        has_annotations = getattr(self.trainer, "datamodule", None) is not None
        if not bool(self.pca.fitted) or (has_annotations and not bool(self.pose_map.fitted)):
            landmarks, pose = self._annotated_frames()
            if not bool(self.pca.fitted):
                self.fit_basis(landmarks)
            if pose is not None and not bool(self.pose_map.fitted):
                self.fit_pose_map(landmarks, pose)
        self.scale_to_basis()

    @torch.no_grad()
    def scale_to_basis(self) -> None:
        """The regressor's outputs and (while it is untrained) the adaptor's inputs in units of the basis' std."""
        self.regressor.set_param_std(self.pca.std)
        if not self.adaptor.trained:
            self.adaptor.set_input_scale(self.pca.std)

    @torch.no_grad()
    def fit_basis(self, landmarks: torch.Tensor) -> None:
        """Stage 1: fit the PCA to pixel landmarks ``[N, 68, 2]`` and scale the regressor and adaptor to it."""
        self.pca.fit_landmarks(landmarks.to(self.pca.mean.device), self.image_size)
        self.scale_to_basis()

    @torch.no_grad()
    def fit_pose_map(self, landmarks: torch.Tensor, pose: torch.Tensor) -> None:
        """Fit the head-pose map (:mod:`.posemap`) from pixel landmarks ``[N, 68, 2]`` and their annotated
        ``pose [N, 3]`` (yaw, pitch, roll degrees): the landmarks' own parameters ``E_k (L - L_bar)`` against the
        angles. Needs the basis."""
        device = self.pca.mean.device
        aligned = align_landmarks(landmarks.to(device, self.pca.mean.dtype), self.image_size)
        params = self.pca.project(aligned, self.pca.num_components)
        self.pose_map.fit(params, pose.to(params))

    def _annotated_frames(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Every annotated, *detected* training frame's landmarks ``[N, 68, 2]`` (pixels of ``image_size``
        frames) and, when the annotations carry it, its head pose ``[N, 3]`` in degrees
        (:func:`reenact.data.annotations.annotated_training_frames`)."""
        from reenact.data.annotations import annotated_training_frames

        frames = annotated_training_frames(self.trainer.datamodule, self.image_size, "LPMM builds its landmark "
                                           "basis", self.hparams.basis_max_frames)
        return frames.landmarks, frames.pose

    @torch.no_grad()
    def prepare_adaptor(self, identity_image: torch.Tensor, pose_frames: torch.Tensor) -> None:
        """Stage 3 inputs: the fixed identity ``[1, 3, H, W]`` and ``v_bar`` = mean ``E(frame)`` over
        ``pose_frames [N, 3, H, W]``."""
        self._adaptor_cache = None
        self.identity_image.copy_(identity_image.reshape(1, *identity_image.shape[-3:]))
        self.identity_ready.fill_(True)
        latents = torch.cat([self.backbone.encode_pose(chunk) for chunk in pose_frames.split(16)], 0)
        self.adaptor.set_latent_mean(latents)

    def _prepare_adaptor_from_data(self) -> None:
        # Drawn from the dataset by index, identically on every rank: no communication needed.
        dataset = self.trainer.datamodule.train_dataset
        count = max(1, min(len(dataset), (self.hparams.latent_mean_frames + 1) // 2))
        items = [dataset[i] for i in range(count)]
        frames = torch.cat([torch.cat([item["source"], item["driving"]], 0) for item in items], 0)
        identity = dataset[self.hparams.identity_index % len(dataset)]["source"][:1]
        self.prepare_adaptor(identity.to(self.device), frames[: self.hparams.latent_mean_frames].to(self.device))

    # ----------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        stage = self.stage()
        if stage == "done":
            self.trainer.should_stop = True
            return None
        optimizer_regressor, optimizer_adaptor = self.optimizers()
        images = torch.cat([batch["source"][:, 0], batch["driving"][:, 0]], 0)
        batch_size = batch["source"].shape[0]
        if stage == "regressor":
            if "source_landmarks" not in batch:
                raise ValueError("the LP-regressor trains on annotated landmarks; batches carry none")
            landmarks = torch.cat([batch["source_landmarks"][:, 0], batch["driving_landmarks"][:, 0]], 0)
            detected = (torch.cat([batch["source_detected"][:, 0], batch["driving_detected"][:, 0]], 0)
                        if "source_detected" in batch else None)
            self.regressor.train()
            losses = self.regressor_losses(images, landmarks, detected)
            optimizer_regressor.zero_grad(set_to_none=True)
            backward_without_reducer(self, losses["total"])
            all_reduce_mean_(p.grad for p in self.regressor.parameters())
            optimizer_regressor.step()
            # BatchNorm running statistics saw only this process's batch: average them so every rank keeps the
            # same regressor (DDP's own buffer broadcast is off when the reducer is bypassed).
            all_reduce_mean_(self.regressor.buffers())
        else:
            if not (bool(self.adaptor.latent_mean_ready) and bool(self.identity_ready)):
                self._prepare_adaptor_from_data()
            self.regressor.eval()  # frozen: BatchNorm uses its running statistics
            if self._adaptor_cache is None:
                self._adaptor_cache = self.adaptor_constants()
            losses = self.adaptor_losses(images, self._adaptor_cache)
            optimizer_adaptor.zero_grad(set_to_none=True)
            backward_without_reducer(self, losses["total"])
            all_reduce_mean_(p.grad for p in self.adaptor.parameters())
            optimizer_adaptor.step()
        self.log("train/stage", float(stage == "adaptor"), batch_size=batch_size)
        for name, value in losses.items():
            self.log(f"train/{stage}/{name}", value.detach(), prog_bar=name == "total", batch_size=batch_size)
        return losses["total"].detach()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [adam(self.regressor.parameters(), lr=self.hparams.regressor_lr),
                adam(self.adaptor.parameters(), lr=self.hparams.adaptor_lr)]

    # --------------------------------------------------------------------------------------- evaluation
    def _update_nme(self, metric: MeanMetric, batch: dict[str, Any]) -> None:
        """Accumulate the LP-regressor NME (Eq. 5) of the batch's driving frames, when they are annotated."""
        if "driving_landmarks" not in batch or not bool(self.pca.fitted):
            return
        if "padding" in batch and bool(batch["padding"][0]):
            return  # a repeated video that only keeps DDP ranks in step
        frames = batch["driving"].flatten(0, 1)
        landmarks = batch["driving_landmarks"].flatten(0, 1)
        if "driving_detected" in batch:
            detected = batch["driving_detected"].flatten(0, 1).bool()
            frames, landmarks = frames[detected], landmarks[detected]
            if frames.shape[0] == 0:
                return
        predicted = self.pca.reconstruct(self.params_from_image(frames)).unflatten(-1, (NUM_LANDMARKS, 2))
        target = align_landmarks(landmarks.to(predicted.dtype), self.image_size).unflatten(-1, (NUM_LANDMARKS, 2))
        metric.update(100.0 * nme(predicted, target))  # in percent, as Table 1

    def _log_nme(self, metric: MeanMetric, name: str) -> None:
        # compute() is a collective under DDP: every rank calls it here, whatever its number of steps (a rank
        # without annotated videos contributes nothing; its "compute before update" warning is expected).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*compute.*before the ``update``.*")
            value = metric.compute()
        metric.reset()
        if torch.isfinite(value):
            self.log(name, value, sync_dist=False)

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self.val_nme.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        super().validation_step(batch, batch_idx, dataloader_idx)
        self._update_nme(self.val_nme, batch)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self._log_nme(self.val_nme, "val/lp_nme")

    def on_test_epoch_start(self) -> None:
        super().on_test_epoch_start()
        self.test_nme.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        super().test_step(batch, batch_idx, dataloader_idx)
        if batch_protocol(batch) == SAME_IDENTITY:
            self._update_nme(self.test_nme, batch)

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        self._log_nme(self.test_nme, "test/lp_nme")

    def train(self, mode: bool = True) -> LPMM:
        super().train(mode)
        self.backbone.train(False)  # always frozen
        return self
