"""Lightning wrapper of PECHead (``reenact fit --model pechead``): Gao et al., "High-Fidelity and Freely
Controllable Talking Head Video Generation", CVPR 2023 (Sec. 3-4; supplement Sec. 1-2).

Two fit stages, chosen by ``stage`` (supplement 2.3: "R is separately trained"):

* ``stage: reconstructor`` trains only the Face Shape Reconstructor ``R`` (Eq. 1) with the landmark
  reprojection loss against the dataset's landmarks plus coefficient regularisation
  (:func:`reenact.models.pechead.reconstructor.reconstructor_loss`). Generator and discriminator are frozen.
* ``stage: generator`` (default) loads ``R`` from ``reconstructor_ckpt`` (a checkpoint of the first stage), freezes
  it, and trains ``E`` + ``G`` and the two-scale spectral-norm patch discriminator with Eq. 5:
  ``10 L_p + 10 L_v + 1 L_k + 10 L_e + 5 L_w + 1 L_G`` and hinge ``L_D`` (:mod:`reenact.models.pechead.losses`).
  AdamW β = (0.9, 0.999) with a OneCycle schedule from 1e-4 up to 4e-4 (supplement 2.3).

Training choices for small budgets (see the README's "Training recipe at CPU scale"; the ``paper`` preset keeps
the paper's recipe): ``adversarial_start`` / ``adversarial_ramp`` switch ``L_G`` off for the first fraction of the
schedule (a reconstruction warm-up; the discriminator still trains on real vs. generated frames) and then ramp
``λ_G`` linearly to its value; both are fractions of the schedule length (the OneCycle length, i.e.
``max_steps``), so they follow any step budget and always complete. ``output_skip = "warped_source"`` starts the
generator at the warped source image (:mod:`reenact.models.pechead.torch_model`). ``structural_weight`` adds an
offline MS-SSIM term ``λ_s (1 − MS-SSIM(x^_d, x^d))`` as a *stand-in* for the VGG19 term ``L_v`` when its
ImageNet weights are missing (off by default; never VGG with random weights).

Optimisation is manual and DDP-safe without ``find_unused_parameters`` (the same technique as LIA): one backward
pass over ``L_G + L_D`` per batch, the generator's adversarial term through a parameter-detached discriminator
call, then both optimisers step; ``trainer.global_step`` therefore advances by 2 per batch in the generator stage
(by 1 in the reconstructor stage, which has one optimiser). Frozen modules
(``R``, or ``G``/``D`` in the reconstructor stage) have ``requires_grad = False`` from construction on, which
DDP accepts.

Samples are ``sequence`` clips (T = 5 source and T = 5 driving frames of one video): the source clip feeds
``x^s_t`` and the frame flow of CAP, the driving clip gives the targets.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info

from reenact.data.datasets import SamplingSpec
from reenact.models.base import ReenactmentModule
from reenact.models.pechead.losses import frozen_logits, keypoint_distance_loss, ms_ssim_loss, warping_loss
from reenact.models.pechead.reconstructor import (
    FaceShapeReconstructor,
    condition_vector,
    pose_error,
    reconstructor_loss,
)
from reenact.models.pechead.torch_model import PECHeadConfig, PECHeadGenerator
from reenact.nn.discriminators import MultiScaleDiscriminator
from reenact.nn.frame_flow import FlowMethod, FrameFlow
from reenact.nn.losses import equivariance_loss, hinge_d_loss, hinge_g_loss
from reenact.nn.optim import adam
from reenact.nn.tps import RandomTPS


class Variant(NamedTuple):
    """One Table 4 setting: the MMFA ``mode``, whether its levels use Eq. 3's motion-aware (deformable) alignment,
    and whether CAP runs."""

    motion_mode: str
    deformable: bool
    cap: bool


#: Table 4 settings (Sec. 4.5). (1)-(3) compare which points drive one plain occlusion-aware warp; (4) FeatCat
#: warps with both estimators and concatenates the two feature maps at a single level, with no motion-aware
#: alignment; (5) MMFA adds Eq. 3's deformable alignment on two levels; (6) Full adds CAP.
VARIANTS: dict[str, Variant] = {
    "kp": Variant("kp", False, False), "lmk": Variant("lmk", False, False),
    "direct": Variant("direct", False, False), "featcat": Variant("featcat", False, False),
    "mmfa": Variant("mmfa", True, False), "full": Variant("mmfa", True, True),
}
Coefficients = dict[str, torch.Tensor]


class PECHead(ReenactmentModule):
    """PECHead: ``R`` + ``E`` + ``G`` (encoder, MMFA, CAP, decoder) + two-scale discriminator.

    Args:
        image_size: frame side (paper 256).
        stage: ``"generator"`` or ``"reconstructor"`` (see the module docstring).
        reconstructor_backbone: timm name of ``R``'s CNN (paper ``resnet50``), built with ``pretrained=False``.
        reconstructor_ckpt: checkpoint whose ``reconstructor.*`` weights initialise ``R`` (generator stage).
        expression_basis: ``R``'s expression space (:mod:`reenact.models.pechead.reconstructor`):
            ``blendshapes`` (the face model's 7), ``learned`` (``expression_components`` PCA components of the
            training set's pose- and identity-normalised landmarks, fitted when the R stage starts and stored
            in the checkpoint) or ``bfm`` (Deng et al.'s 64, from ``bfm_path`` or the ``bfm-front`` weights
            entry: the user's ``BFM_model_front.mat``).
        variant: Table 4 setting: ``kp``, ``lmk``, ``direct``, ``featcat``, ``mmfa`` (no CAP) or ``full``.
        deformable_alignment: Eq. 3 on or off (warp only) in every MMFA level; ``None`` (default): the variant's
            own setting (:data:`VARIANTS`: on for ``mmfa`` and ``full``, off for the four single-level settings).
        frame_flow: CAP's frame flow: ``auto`` (RAFT-large if its weights resolve, else OpenCV DIS), ``raft``,
            ``dis``, ``farneback``.
        generator: the generator's sizes and ``output_skip``,
            :class:`~reenact.models.pechead.torch_model.PECHeadConfig` (or a mapping of its fields:
            ``create_model("pechead", generator={"block_expansion": 32})``, ``--model.generator.block_expansion
            32``); stored as a plain mapping. The variant sets the ablation switches.
        disc_block_expansion, disc_num_blocks, disc_max_features, disc_padding: each patch discriminator
            (two scales, 1 and 1/2, spectral norm).
        pixel_weight, perceptual_weight, keypoint_weight, equivariance_weight, warping_weight, gan_weight:
            λ_p, λ_v, λ_k, λ_e, λ_w, λ_G of Eq. 5 (10, 10, 1, 10, 5, 1). ``perceptual_weight = 0`` drops the VGG
            term (no ImageNet weights needed); otherwise the real VGG19 weights must resolve.
        eta: threshold of L_k (0.1).
        lr, max_lr: OneCycle base and peak learning rates (1e-4, 4e-4); ``onecycle_steps``: schedule length in
            batches (``None``: the trainer's estimate).
        reconstructor_lr, identity_reg, expression_reg: R stage's AdamW rate and regularisation weights.
        tps_sigma_affine, tps_sigma_tps, tps_points: random TPS of L_e (FOMM: 0.05, 0.005, 5).
        adversarial_start: fraction of the schedule (OneCycle length) before ``L_G`` is switched on (0: paper).
        adversarial_ramp: fraction of the schedule over which ``λ_G`` then rises linearly from 0 (0: at once).
        structural_weight: weight of the offline ``1 − MS-SSIM`` stand-in for ``L_v`` (0: off).
        clip_frames: ``T``, source and driving frames of a training clip (supplement 2.3: 5); sets
            ``train_sampling``. CAP needs ``T >= 2`` to propagate anything during training.
    """

    registry_name: ClassVar[str] = "pechead"
    generator_config = PECHeadConfig
    variants: ClassVar[tuple[str, ...]] = tuple(VARIANTS)
    #: Paper default (T = 5 + 5); ``clip_frames`` sets the instance's.
    train_sampling = SamplingSpec(mode="sequence", num_source=5, num_driving=5)
    stateful_animation: ClassVar[bool] = True
    #: Frontalisation and expression transfer through :meth:`edit` (Sec. 4.3, Table 3's editing protocol).
    supports_editing: ClassVar[bool] = True

    def __init__(self, image_size: int = 64, stage: Literal["generator", "reconstructor"] = "generator",
                 reconstructor_backbone: str = "resnet10t", reconstructor_ckpt: str | None = None,
                 expression_basis: Literal["blendshapes", "learned", "bfm"] = "blendshapes",
                 expression_components: int = 32, bfm_path: str | None = None,
                 variant: str = "full", deformable_alignment: bool | None = None, frame_flow: FlowMethod = "auto",
                 generator: PECHeadConfig = PECHeadConfig(),  # noqa: B008 - frozen, shared safely
                 disc_block_expansion: int = 16, disc_num_blocks: int = 4, disc_max_features: int = 128,
                 disc_padding: int = 1, pixel_weight: float = 10.0, perceptual_weight: float = 0.0,
                 keypoint_weight: float = 1.0, equivariance_weight: float = 10.0, warping_weight: float = 5.0,
                 gan_weight: float = 1.0, eta: float = 0.1, lr: float = 1e-4, max_lr: float = 4e-4,
                 onecycle_steps: int | None = None, reconstructor_lr: float = 1e-4, identity_reg: float = 1e-3,
                 expression_reg: float = 1e-3, tps_sigma_affine: float = 0.05, tps_sigma_tps: float = 0.005,
                 tps_points: int = 5, adversarial_start: float = 0.0,
                 adversarial_ramp: float = 0.0, structural_weight: float = 0.0, clip_frames: int = 5) -> None:
        super().__init__(image_size=image_size)
        self.save_hyperparameters()
        config = self.generator_config_from_hparams()
        if stage not in ("generator", "reconstructor"):
            raise ValueError(f"stage must be 'generator' or 'reconstructor', got {stage!r}")
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")
        self.automatic_optimization = False
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
        self.train_sampling = SamplingSpec(mode="sequence", num_source=clip_frames, num_driving=clip_frames)
        motion_mode, variant_deformable, use_cap = VARIANTS[variant]
        deformable = variant_deformable if deformable_alignment is None else deformable_alignment
        self.reconstructor = FaceShapeReconstructor(reconstructor_backbone, expression_basis=expression_basis,
                                                    expression_components=expression_components,
                                                    bfm_path=bfm_path)
        if reconstructor_ckpt:
            self.load_reconstructor(reconstructor_ckpt)
        self.generator = PECHeadGenerator(self.reconstructor.coefficient_dim, config, motion_mode=motion_mode,
                                          deformable=deformable, use_cap=use_cap)
        self.discriminator = MultiScaleDiscriminator(
            scales=(1.0, 0.5), block_expansion=disc_block_expansion, num_blocks=disc_num_blocks,
            max_features=disc_max_features, spectral_norm=True, padding=disc_padding,
        )
        from reenact.nn.losses import VGG19Perceptual

        # Built when training starts (ReenactmentModule.setup): inference and loading need no VGG19 file.
        # Supplement Eq. 2 sums the L1 distances over pyramid scales i and VGG layers j unweighted; λ_v (Eq. 5) is
        # the only weight, so the layers get 1 each (VGG19Perceptual's default 10 per layer is FOMM's, which
        # folds its λ into the layers and would count λ_v twice here).
        self.defer_perceptual_loss((lambda: VGG19Perceptual(weights=(1.0,) * 5)) if perceptual_weight > 0 else None)
        # CAP's frame flow only runs when consecutive source frames differ (training clips, video sources).
        self.frame_flow = FrameFlow(frame_flow) if use_cap else None
        if self.frame_flow is not None:
            rank_zero_info(f"PECHead: CAP frame flow = {self.frame_flow.method}")
        if not (0.0 <= adversarial_start <= 1.0 and 0.0 <= adversarial_ramp <= 1.0):
            raise ValueError("adversarial_start and adversarial_ramp are fractions of the schedule, in [0, 1]")
        self._schedule_batches: int | None = None
        frozen = [self.reconstructor] if stage == "generator" else [self.generator, self.discriminator]
        for module in frozen:
            module.requires_grad_(False)

    # ------------------------------------------------------------------------------------------- helpers
    def load_reconstructor(self, path: str) -> None:
        """Initialise ``R`` from the ``reconstructor.*`` entries of a checkpoint (of the reconstructor stage)."""
        from reenact.weights import load_state_dict_file

        state = load_state_dict_file(path, key="state_dict")
        prefix = "reconstructor."
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not weights:
            raise ValueError(f"{path} holds no '{prefix}*' weights")
        self.reconstructor.load_state_dict(weights)
        rank_zero_info(f"PECHead: reconstructor R loaded from {path}")

    def on_fit_start(self) -> None:
        # A learned expression basis is a function of the training annotations: fitted once, before R trains
        # (a resumed run restores it with the checkpoint). The generator stage needs R's fitted basis.
        if self.reconstructor.expression_ready:
            return
        if self.hparams.expression_basis == "bfm":
            self.reconstructor.load_bfm_basis()  # names BFM_model_front.mat and where it goes when missing
            return
        if self.hparams.stage == "generator":
            raise ValueError("PECHead generator stage: R's learned expression basis is not fitted; pass the "
                             "reconstructor stage's checkpoint with --model.reconstructor_ckpt (same "
                             "--model.expression_basis learned and expression_components)")
        from reenact.data.annotations import annotated_training_frames

        frames = annotated_training_frames(self.trainer.datamodule, self.hparams.image_size,
                                           "PECHead learns its expression basis", max_frames=2000)
        explained = self.reconstructor.fit_expression_basis(frames.landmarks.to(self.device), frames.video)
        rank_zero_info(f"PECHead: learned {len(explained)} expression components from {len(frames.video)} "
                       f"frames ({float(explained.sum()):.1%} of the expression displacement energy)")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # R's weights are in the state dict; the stage-1 path need not exist where the checkpoint is loaded.
        if "hyper_parameters" in checkpoint:
            checkpoint["hyper_parameters"]["reconstructor_ckpt"] = None

    def train(self, mode: bool = True) -> PECHead:
        super().train(mode)
        if self.hparams.stage == "generator":
            self.reconstructor.eval()  # frozen: keep its BatchNorm statistics fixed
        return self

    def coefficients(self, images: torch.Tensor) -> Coefficients:
        """``R`` on ``images [B, T, 3, H, W]`` -> coefficient dict with ``[B, T, ...]`` entries."""
        b, t = images.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.hparams.stage == "reconstructor"):
            coeffs = self.reconstructor(images.flatten(0, 1))
        return {k: v.reshape(b, t, *v.shape[1:]) for k, v in coeffs.items()}

    def relative_coefficients(self, source: Coefficients, driving: Coefficients) -> Coefficients:
        """Relative motion transfer (Sec. 4.4): the source's coefficients plus the driving clip's change from its
        first frame (scale multiplicatively; blendshape expressions kept in ``[0, 1]``). ``source`` entries
        ``[B, 1, ...]``, ``driving`` ``[B, T, ...]``."""
        out = {}
        for key in ("pose", "translation", "expression"):
            out[key] = source[key] + (driving[key] - driving[key][:, :1])
        out["scale"] = source["scale"] * driving["scale"] / driving["scale"][:, :1]
        out["identity"] = source["identity"].expand_as(driving["identity"])
        if self.reconstructor.blendshapes:
            out["expression"] = out["expression"].clamp(0, 1)
        return out

    def frame_grids(self, source: torch.Tensor) -> torch.Tensor | None:
        """Frame flow ``w_{t-1->t}`` between consecutive source frames ``[B, T, 3, H, W]`` -> grids
        ``[B, T, H, W, 2]`` (entry 0 unused), or ``None`` when CAP is off or there is one source frame."""
        if self.frame_flow is None or source.shape[1] < 2:
            return None
        b, t, _, h, w = source.shape
        grids = self.frame_flow(source[:, :-1].flatten(0, 1), source[:, 1:].flatten(0, 1)).view(b, t - 1, h, w, 2)
        return torch.cat([grids[:, :1], grids], dim=1)

    def render(self, source: torch.Tensor, source_coeffs: Coefficients, target_coeffs: Coefficients
               ) -> dict[str, Any]:
        """Generate frames with the target coefficients.

        Args:
            source: ``[B, S, 3, H, W]`` with ``S = 1`` (one image) or ``S = T`` (a source clip, frame ``t`` drives
                frame ``t``; CAP then uses the frame flow between consecutive source frames).
            source_coeffs: ``R(source)``, ``[B, S, ...]``.
            target_coeffs: ``[B, T, ...]``; their identity is ignored: ``l^d`` always uses the source identity
                (Sec. 3.1).

        Returns the generator's output dict (``image [B, T, 3, H, W]``, keypoints, deformations) plus ``lmk_source``,
        ``lmk_driving``, ``cond_source``, ``cond_driving``.
        """
        t = target_coeffs["pose"].shape[1]
        if source.shape[1] not in (1, t):
            raise ValueError(f"source must have 1 or T={t} frames, got {source.shape[1]}")
        size = (source.shape[-2], source.shape[-1])
        src = {k: v.expand(v.shape[0], t, *v.shape[2:]) for k, v in source_coeffs.items()}
        lmk_source = self.reconstructor.landmarks(src, size)
        lmk_driving = self.reconstructor.landmarks(target_coeffs, size, identity=src["identity"])
        cond_source, cond_driving = condition_vector(src), condition_vector(target_coeffs)
        out = self.generator(source, cond_source, cond_driving, lmk_source, lmk_driving, self.frame_grids(source))
        out.update(lmk_source=lmk_source, lmk_driving=lmk_driving, cond_source=cond_source,
                   cond_driving=cond_driving)
        return out

    # ----------------------------------------------------------------------------------------- animate
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, relative: bool = False) -> torch.Tensor:
        """``source [B, S, 3, H, W]`` (the first frame is used), ``driving [B, T, 3, H, W]`` -> ``[B, T, 3, H, W]``.

        Absolute: the driving frames' pose and expression with the source identity; relative: the source's
        coefficients plus the driving change from the first driving frame. CAP runs over the whole clip.
        """
        source = source[:, :1]
        src, drv = self.coefficients(source), self.coefficients(driving)
        target = self.relative_coefficients(src, drv) if relative else drv
        return self.render(source, src, target)["image"]

    def edit(self, source: torch.Tensor, *, pose: torch.Tensor | None = None, expression: torch.Tensor | None = None,
             expression_from: torch.Tensor | None = None, expression_scale: float | torch.Tensor | None = None,
             relative_pose: bool = False) -> torch.Tensor:
        """Free pose/expression editing (Sec. 4.3): render ``source [B, 3, H, W]`` with modified coefficients.

        Args:
            pose: ``[B, 3]`` or ``[3]`` yaw/pitch/roll in degrees: absolute (frontalisation = zeros) or, with
                ``relative_pose``, added to the source's pose.
            expression: ``[B, E]`` or ``[E]`` expression coefficients to set.
            expression_from: ``[B, 3, H, W]`` image whose expression ``R`` estimates and transfers.
            expression_scale: factor on the (resulting) expression coefficients.

        Returns ``[B, 3, H, W]``. With no modification this is exactly ``animate(source, source)``'s frame.
        """
        clip = source.unsqueeze(1)
        src = self.coefficients(clip)
        target = {k: v.clone() for k, v in src.items()}
        if pose is not None:
            pose = pose.to(source).expand_as(target["pose"][:, 0]).unsqueeze(1)
            target["pose"] = target["pose"] + pose if relative_pose else pose
        if expression_from is not None:
            target["expression"] = self.coefficients(expression_from.unsqueeze(1))["expression"]
        if expression is not None:
            target["expression"] = expression.to(source).expand_as(target["expression"][:, 0]).unsqueeze(1)
        if expression_scale is not None:
            target["expression"] = target["expression"] * expression_scale
        return self.render(clip, src, target)["image"][:, 0]

    def edit_image(self, source: torch.Tensor, *, head_pose: torch.Tensor | None = None,
                   expression_from: torch.Tensor | None = None) -> torch.Tensor:
        """The shared editing interface (:meth:`ReenactmentModule.edit_image`) through :meth:`edit`.

        ``head_pose [B, 3]``: absolute yaw/pitch/roll in degrees (zeros frontalise); ``expression_from
        [B, 3, H, W]``: ``R``'s expression coefficients of these images replace the source's, every other
        coefficient (pose included) stays the source's. ``source [B, 3, H, W]`` -> ``[B, 3, H, W]``.
        """
        return self.edit(source, pose=head_pose, expression_from=expression_from)

    @torch.no_grad()
    def estimate_pose(self, images: torch.Tensor, chunk: int = 64) -> torch.Tensor:
        """``R``'s head pose of ``images [N, 3, H, W]``: ``[N, 3]`` yaw/pitch/roll in degrees (R in eval mode)."""
        was_training = self.reconstructor.training
        self.reconstructor.eval()
        try:
            return torch.cat([self.reconstructor(part)["pose"] for part in images.split(chunk)])
        finally:
            self.reconstructor.train(was_training)

    def reconstructor_pose_error(self, images: torch.Tensor, poses: torch.Tensor) -> float:
        """Mean absolute yaw/pitch/roll error of ``R`` in degrees against ground-truth ``poses [N, 3]`` (e.g. the
        synthetic dataset's annotations) of ``images [N, 3, H, W]`` (:func:`pose_error`, R in eval mode)."""
        predicted = self.estimate_pose(images)
        return float(pose_error(predicted, poses.to(predicted)))

    # ---------------------------------------------------------------------------------------- training
    def adversarial_factor(self) -> float:
        """Factor on ``λ_G`` at the current batch: 0 during the reconstruction warm-up (the first
        ``adversarial_start`` of the schedule), then a linear ramp to 1 over ``adversarial_ramp`` of it."""
        hp = self.hparams
        if hp.adversarial_start <= 0 and hp.adversarial_ramp <= 0:
            return 1.0
        if self._trainer is None:
            return 1.0
        length = self._schedule_batches or max(1, -(-int(self.trainer.max_steps or 0) // 2))
        batch = self.trainer.global_step // 2  # two optimiser steps per batch
        start, ramp = hp.adversarial_start * length, hp.adversarial_ramp * length
        if batch < start:
            return 0.0
        return 1.0 if ramp <= 0 else min(1.0, (batch - start + 1) / ramp)

    def generator_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Eq. 5 terms (weighted) and ``g_total``, plus hinge ``d_total``, for a sequence batch.

        Every term is a mean over the ``B·T`` frames, i.e. accumulated over T and normalised by T (suppl. Sec. 1).
        """
        hp = self.hparams
        source, driving = batch["source"], batch["driving"]
        if source.shape[1] != driving.shape[1] and source.shape[1] != 1:
            source = source[:, :1]
        # One call of the frozen R (eval mode) on the source and driving frames together.
        both = self.coefficients(torch.cat([source, driving], 1))
        s_len = source.shape[1]
        src = {k: v[:, :s_len] for k, v in both.items()}
        drv = {k: v[:, s_len:] for k, v in both.items()}
        out = self.render(source, src, drv)
        b, t = driving.shape[:2]
        generated, target = out["image"].flatten(0, 1), driving.flatten(0, 1)
        source_frames = source.expand(b, t, *source.shape[2:]).flatten(0, 1)
        losses: dict[str, torch.Tensor] = {"pixel": hp.pixel_weight * F.l1_loss(generated, target)}
        if self.perceptual is not None:
            losses["perceptual"] = hp.perceptual_weight * self.perceptual(generated, target)
        kps = torch.cat([out["kp_source"], out["kp_driving"]], dim=1)
        losses["keypoint"] = hp.keypoint_weight * keypoint_distance_loss(kps, hp.eta) * 2  # sum over z in {s, d}
        # L_e (suppl. Eq. 4): E on a TPS-warped source with the driving (p, e) vs the warped E(x^s, p^d, e^d).
        tps = RandomTPS(b * t, hp.tps_sigma_affine, hp.tps_sigma_tps, hp.tps_points, device=source.device,
                        dtype=source.dtype)
        kp_transformed = self.generator.keypoints(tps.transform_frame(source_frames),
                                                  out["cond_driving"].flatten(0, 1))
        losses["equivariance"] = hp.equivariance_weight * equivariance_loss(
            out["kp_driving"].flatten(0, 1), kp_transformed, tps)
        local = out.get("local_deformation")
        glob = out.get("global_deformation")
        losses["warping"] = hp.warping_weight * warping_loss(
            source_frames, target, None if local is None else local.flatten(0, 1),
            None if glob is None else glob.flatten(0, 1))
        if hp.structural_weight > 0:
            losses["structural"] = hp.structural_weight * (1 - ms_ssim_loss(generated, target))
        factor = self.adversarial_factor() if self.training else 1.0
        if factor > 0:
            losses["gan_g"] = factor * hp.gan_weight * hinge_g_loss(frozen_logits(self.discriminator, generated))
        losses["g_total"] = torch.stack([v for v in losses.values()]).sum()
        # One discriminator call on real and generated frames together (each scale's logits split afterwards).
        logits = [out for _, out in self.discriminator(torch.cat([target, generated.detach()])).values()]
        real, fake = [x[: target.shape[0]] for x in logits], [x[target.shape[0]:] for x in logits]
        losses["d_total"] = hinge_d_loss(real, fake)
        return losses

    def reconstructor_losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """R stage: reprojection + regularisation on every source and driving frame of the batch."""
        if "source_landmarks" not in batch:
            raise ValueError("the reconstructor stage needs landmark annotations (source_landmarks) in the data")
        images = torch.cat([batch["source"], batch["driving"]], 1).flatten(0, 1)
        landmarks = torch.cat([batch["source_landmarks"], batch["driving_landmarks"]], 1).flatten(0, 1)
        coeffs = self.reconstructor(images)
        hp = self.hparams
        losses = reconstructor_loss(self.reconstructor, coeffs, landmarks, (images.shape[-2], images.shape[-1]),
                                    hp.identity_reg, hp.expression_reg)
        if "source_pose" in batch:
            poses = torch.cat([batch["source_pose"], batch["driving_pose"]], 1).flatten(0, 1)
            losses["pose_error_deg"] = pose_error(coeffs["pose"].detach(), poses.to(coeffs["pose"]))
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        if self.hparams.stage == "reconstructor":
            losses = self.reconstructor_losses(batch)
            total = losses["total"]
        else:
            losses = self.generator_losses(batch)
            total = losses["g_total"] + losses["d_total"]
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.manual_backward(total)
        for optimizer in optimizers:
            optimizer.step()
        schedulers = self.lr_schedulers()
        schedulers = [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]
        for scheduler in schedulers:
            # OneCycle refuses steps past its length; training longer than planned keeps the final rate.
            if scheduler.last_epoch + 1 < scheduler.total_steps:  # type: ignore[union-attr]
                scheduler.step()
        batch_size = batch["source"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name in ("g_total", "d_total", "total"),
                     batch_size=batch_size)
        return total.detach()

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        if hp.stage == "reconstructor":
            return adam(self.reconstructor.parameters(), lr=hp.reconstructor_lr, betas=(0.9, 0.999), decoupled=True)
        steps = hp.onecycle_steps
        if steps is None:
            steps = 100_000
            if self._trainer is not None:
                if self.trainer.max_steps and self.trainer.max_steps > 0:
                    # max_steps counts the steps of both optimisers: two per batch.
                    steps = -(-self.trainer.max_steps // 2)
                elif self.trainer.estimated_stepping_batches != float("inf"):
                    steps = int(self.trainer.estimated_stepping_batches)
        steps = max(int(steps), 2)
        self._schedule_batches = steps
        optimizers, schedulers = [], []
        for module in (self.generator, self.discriminator):
            optimizer = adam(module.parameters(), lr=hp.lr, betas=(0.9, 0.999), decoupled=True)
            # initial lr = max_lr / div_factor = lr; momentum cycling off keeps β1 = 0.9 as the paper states.
            schedulers.append(torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=hp.max_lr, total_steps=steps, div_factor=hp.max_lr / hp.lr,
                cycle_momentum=False))
            optimizers.append(optimizer)
        return optimizers, schedulers


__all__ = ["PECHead", "VARIANTS"]
