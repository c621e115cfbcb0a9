"""Lightning wrapper of :class:`~reenact.models.fsrt.torch_model.FSRTGenerator`: FSRT's training (Sec. 3.2-3.3).

Training runs in stages counted in training iterations (one batch each, stored in the ``train_iteration``
buffer so resuming continues the schedule):

0. keypoint-detector pretraining (``kp_pretrain_steps`` iterations, optional): the FOMM hourglass learns to
   predict 10 keypoints derived from the dataset's 68 landmarks (:mod:`reenact.models.fsrt.losses`). Skip it by
   loading a detector (``kp_detector_path``) or the released checkpoints (:mod:`reenact.models.fsrt.official`).
   From then on the detector is frozen (Sec. 3.3).
1. phase I (FSRT iterations ``[0, phase2_start)``): ``L_reg + lambda_MSE L_MSE`` on ``num_sampled_pixels`` random
   pixels (Eq. 16-17).
2. phase II (``[phase2_start, phase3_start)``): the whole frame is rendered, pixels of a stride-``grad_stride``
   sub-grid with a random offset with gradient, the rest without; adds the VGG19 perceptual loss ``L_P``.
3. phase III (``>= phase3_start``): adds the keypoint-aware LSGAN discriminator ``L_A`` and feature matching
   ``L_A^F`` (Eq. 18); the generator gets them only after ``disc_warmup_steps`` iterations of discriminator
   training.

Augmentation and regularisation in every phase (Sec. 3.1-3.2): keypoints are detected before a random crop
around the source keypoints (out-of-frame keypoints); colour jitters A1, A2 of source and driving frames and A3
of the un-cropped driving frame; the encoder sees the A1 colours with the A2 expression vectors; the decoder
uses the expression of the cropped A3 driving frame ``Omega(I_D^A3)``, or in ``1 - crop_probability`` of the
cases (25%) that of ``I_D^A`` (A1 or A2); ``L_reg`` of Eq. 16.

Optimisation is manual (generator and discriminator alternate; the detector has its own optimiser). Gradients
are averaged across processes explicitly after each backward pass, which works with the plain ``ddp`` strategy
although every stage and optimiser uses a different subset of the parameters (see :mod:`reenact.training.distributed`).
Adam with linear warm-up then exponential decay (``LambdaLR``), as the released trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from reenact.data.datasets import SamplingSpec
from reenact.models.base import ReenactmentModule
from reenact.models.fsrt.augment import (
    color_jitter,
    crop_boxes,
    crop_frames,
    crop_points,
    face_boxes,
    jitter_parameters,
    out_of_frame_boxes,
)
from reenact.models.fsrt.losses import (
    keypoint_supervision_loss,
    landmarks_to_keypoints,
    random_pixel_indices,
    regularisation_loss,
    strided_pixel_indices,
)
from reenact.models.fsrt.torch_model import FSRTConfig, FSRTGenerator, best_initial_frame, pixel_grid
from reenact.nn.discriminators import MultiScaleDiscriminator
from reenact.nn.keypoints import pixels_to_normalized
from reenact.nn.losses import feature_matching_loss, lsgan_d_loss, lsgan_g_loss
from reenact.nn.optim import adam
from reenact.training.distributed import all_reduce_mean_, manual_step, world_size
from reenact.training.schedules import WarmupExponentialDecay


class FSRT(ReenactmentModule):
    """FSRT (Rochow et al., CVPR 2024): set-latent transformer face reenactment.

    Training arguments (paper values in brackets):

    Args:
        generator: the architecture, :class:`~reenact.models.fsrt.torch_model.FSRTConfig` (its defaults and the
            ``paper`` preset: the released sizes); a mapping of its fields is accepted too (``create_model("fsrt",
            generator={"latent_dim": 96})``, ``--model.generator.latent_dim 96``, a checkpoint's
            hyper-parameters), and is stored as a plain mapping.
        train_sources: source frames per training sample (1; the 2-Src model: 2); sets ``train_sampling``, which
            ``--data.num_source`` still overrides. Any number of sources works at inference. (Not ``num_source``:
            that name belongs to the data module, and Lightning refuses equal names with different values.)
        positional_init: at the first FSRT iteration, :meth:`FSRTGenerator.positional_attention_init` on that
            batch's frames: one decoder head starts out looking up the source token under each query pixel
            (a CPU-scale recipe choice; see the README's training recipe). Off in the ``paper`` preset.
        kp_detector_path: a FOMM/FSRT ``kp_detector.pt`` loaded (``weights_only``) when fitting starts.
        kp_pretrain_steps: iterations of landmark-supervised detector pretraining before FSRT training (needs
            68-point landmarks in the training data); 0 skips it.
        kp_lr: Adam learning rate of the detector pretraining (FOMM's 2e-4).
        lr, lr_warmup_steps, lr_decay_rate, lr_decay_steps: Adam (1e-4), linear warm-up (2,500), exponential
            decay (0.16 over 4 M iterations, the released schedule), for the generator and the discriminator.
        phase2_start, phase3_start: FSRT iterations at which phases II and III begin (200k, 500k).
        num_sampled_pixels: phase-I pixels per sample (4,096).
        grad_stride: stride of the phase-II/III gradient sub-grid (2: 128^2 of 256^2 pixels).
        mse_weight: ``lambda_MSE`` (1).
        perceptual_weights: VGG19 weights for relu1_1 ... relu5_1 (``None``: 5 x 0.01); all 0 disables the
            perceptual loss (it needs the real ImageNet VGG19, see :mod:`reenact.weights`).
        discriminator: build the phase-III discriminator (pix2pix 4x4 convs on the image and the driving
            keypoints' Gaussian heatmaps).
        disc_block_expansion, disc_num_blocks, disc_max_features, disc_padding, disc_kp_variance, disc_scales:
            discriminator (64, 4, 512, 0, 0.01, ``None`` = [1]).
        gan_weight, disc_weight: ``lambda_A`` of the generator and the discriminator loss weight (0.001, 0.001).
        feature_matching_weights: per discriminator block (``None``: 4 x 0.01).
        disc_warmup_steps: phase-III iterations that train only the discriminator (500).
        invariance_weight, covariance_weight, variance_weight: ``lambda_aug``, ``lambda_Cov``, ``lambda_Var``
            (1, 1, 0.2); statistical_regularization: keep the covariance/variance terms.
        crop_probability: how often the decoder gets the cropped driving frame's expression (0.75).
        crop_margins: ``Omega``'s box (Eq. 12) around the driving face: fractions of the box width added left
            and right, of its height above and below (the release: 0, +25 %, +5 %; :func:`augment.face_boxes`).
        jitter_brightness, jitter_contrast, jitter_saturation, jitter_hue: colour jitter strengths (0.1 each).
        out_of_frame_probability, out_of_frame_margins: chance of the out-of-frame crop applied after keypoint
            detection (Sec. 3.1; the paper gives no value) and the largest fractions of the source keypoints'
            box it adds left/right, above and below (the release: 20 %, 50 %, 15 %;
            :func:`augment.out_of_frame_boxes`).
        adapt_scale: relative motion scaled by the keypoints' convex-hull ratio (FOMM).
        best_frame: in relative mode, take the driving frame whose landmarks best match the source's as the
            initial frame when landmarks are available (evaluation batches with annotations, or ``animate``
            called with landmarks); otherwise the first driving frame.
    """

    registry_name = "fsrt"
    generator_config = FSRTConfig
    train_sampling = SamplingSpec(mode="multi_source", num_source=1, num_driving=1)
    stateful_animation = False

    def __init__(
        self,
        image_size: int = 256,
        generator: FSRTConfig = FSRTConfig(),  # noqa: B008 - frozen, shared safely
        positional_init: bool = False,
        train_sources: int = 1,
        kp_detector_path: str | None = None,
        kp_pretrain_steps: int = 0,
        kp_lr: float = 2e-4,
        lr: float = 1e-4,
        lr_warmup_steps: int = 2500,
        lr_decay_rate: float = 0.16,
        lr_decay_steps: int = 4_000_000,
        phase2_start: int = 200_000,
        phase3_start: int = 500_000,
        num_sampled_pixels: int = 4096,
        grad_stride: int = 2,
        mse_weight: float = 1.0,
        perceptual_weights: list[float] | None = None,
        discriminator: bool = True,
        disc_block_expansion: int = 64,
        disc_num_blocks: int = 4,
        disc_max_features: int = 512,
        disc_padding: int = 0,
        disc_kp_variance: float = 0.01,
        disc_scales: list[float] | None = None,
        gan_weight: float = 0.001,
        disc_weight: float = 0.001,
        feature_matching_weights: list[float] | None = None,
        disc_warmup_steps: int = 500,
        invariance_weight: float = 1.0,
        covariance_weight: float = 1.0,
        variance_weight: float = 0.2,
        statistical_regularization: bool = True,
        crop_probability: float = 0.75,
        crop_margins: tuple[float, float, float] = (0.0, 0.25, 0.05),
        jitter_brightness: float = 0.1,
        jitter_contrast: float = 0.1,
        jitter_saturation: float = 0.1,
        jitter_hue: float = 0.1,
        out_of_frame_probability: float = 0.5,
        out_of_frame_margins: tuple[float, float, float] = (0.2, 0.5, 0.15),
        adapt_scale: bool = True,
        best_frame: bool = True,
    ) -> None:
        super().__init__(image_size=image_size)
        self.save_hyperparameters()
        config = self.generator_config_from_hparams()
        self.automatic_optimization = False
        if phase3_start < phase2_start:
            raise ValueError(f"phase3_start ({phase3_start}) must not come before phase2_start ({phase2_start})")
        if image_size % grad_stride:
            raise ValueError(f"grad_stride {grad_stride} must divide image_size {image_size}")
        self.train_sampling = SamplingSpec(mode="multi_source", num_source=train_sources, num_driving=1)
        self.perceptual_weights = [0.01] * 5 if perceptual_weights is None else [float(w) for w in perceptual_weights]
        self.feature_matching_weights = ([0.01] * disc_num_blocks if feature_matching_weights is None
                                         else [float(w) for w in feature_matching_weights])
        if len(self.feature_matching_weights) != disc_num_blocks:
            raise ValueError(f"feature_matching_weights needs one weight per discriminator block ({disc_num_blocks})")
        self.generator = FSRTGenerator(config)
        self.discriminator: MultiScaleDiscriminator | None = None
        if discriminator:
            self.discriminator = MultiScaleDiscriminator(
                scales=[1.0] if disc_scales is None else disc_scales, num_channels=3,
                block_expansion=disc_block_expansion, num_blocks=disc_num_blocks, max_features=disc_max_features,
                spectral_norm=False, num_keypoints=config.num_keypoints, kp_variance=disc_kp_variance,
                padding=disc_padding,
            )
        from reenact.nn.losses import VGG19Perceptual

        # Built when training starts (ReenactmentModule.setup): inference and loading need no VGG19 file.
        # One scale: the released trainer applies VGG19 to the full-resolution frame only.
        weights = tuple(self.perceptual_weights)
        self.defer_perceptual_loss((lambda: VGG19Perceptual(weights=weights, scales=(1.0,)))
                                   if any(w > 0 for w in weights) else None)
        # Training iterations done (batches), independent of Lightning's optimizer-step count.
        self.register_buffer("train_iteration", torch.zeros((), dtype=torch.long))
        self._eval_landmarks: tuple[Tensor | None, Tensor | None] | None = None

    # ------------------------------------------------------------------------------------------ inference
    def animate(self, source: Tensor, driving: Tensor, *, relative: bool = False,
                source_landmarks: Tensor | None = None, driving_landmarks: Tensor | None = None) -> Tensor:
        """``source [B, S, 3, H, W]`` (any S), ``driving [B, T, 3, H, W]`` -> ``[B, T, 3, H, W]`` in ``[0, 1]``.

        Relative mode (Sec. 3.4) uses FOMM's normalisation with the convex-hull scale (``adapt_scale``); its
        initial driving frame is the one whose 68 landmarks best match the first source's when
        ``source_landmarks [B, S, 68, 2]`` and ``driving_landmarks [B, T, 68, 2]`` are given (``best_frame``),
        else the first driving frame.
        """
        initial = None
        if relative and self.hparams.best_frame and source_landmarks is not None and driving_landmarks is not None:
            initial = best_initial_frame(source_landmarks[:, 0], driving_landmarks)
        return self.generator.animate(source, driving, relative=relative, adapt_scale=self.hparams.adapt_scale,
                                      initial_index=initial)

    def _evaluation_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        # The shared evaluation hands generate_video frames only; keep the batch's landmarks for the best-frame
        # choice of relative mode.
        self._eval_landmarks = (batch.get("source_landmarks"), batch.get("driving_landmarks"))
        try:
            return super()._evaluation_step(batch, batch_idx)
        finally:
            self._eval_landmarks = None

    @torch.no_grad()
    def generate_video(self, source: Tensor, driving: Tensor, relative: bool, chunk: int | None = None,
                       on_frames: Callable[[int], None] | None = None) -> Tensor:
        """As the base class, but in relative mode with landmarks the initial frame is the best-matching one
        (chosen over the whole video, shared by all chunks)."""
        landmarks = self._eval_landmarks
        if not (relative and self.hparams.best_frame and landmarks is not None and None not in landmarks):
            return super().generate_video(source, driving, relative, chunk=chunk, on_frames=on_frames)
        chunk = chunk or self.evaluation.chunk
        index = best_initial_frame(landmarks[0][:, 0], landmarks[1]).to(driving.device)
        initial = driving[torch.arange(driving.shape[0], device=driving.device), index][:, None]
        outputs = []
        for start in range(0, driving.shape[1], chunk):
            part = driving[:, start:start + chunk]
            outputs.append(self.generator.animate(source, torch.cat([initial, part], dim=1), relative=True,
                                                  adapt_scale=self.hparams.adapt_scale)[:, 1:])
            if on_frames is not None:
                on_frames(part.shape[1])
        return torch.cat(outputs, dim=1)

    # ------------------------------------------------------------------------------------------ keypoints
    def load_kp_detector(self, path: str) -> None:
        """Load a FOMM/FSRT keypoint detector (``kp_detector.pt`` or a FOMM checkpoint with ``kp_detector``)."""
        from reenact.models.fsrt.official import load_official

        load_official(self.generator, kp_detector=path)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        if self.hparams.kp_detector_path:
            # Loaded here rather than in __init__ so checkpoints rebuild without the file; a resumed checkpoint's
            # weights are restored after this and win.
            self.load_kp_detector(self.hparams.kp_detector_path)
            if self.hparams.kp_pretrain_steps > 0:
                rank_zero_warn("fsrt: kp_detector_path is given and kp_pretrain_steps > 0; the loaded detector is "
                               "trained further during the pretraining stage")
        elif self.hparams.kp_pretrain_steps == 0:
            rank_zero_warn("fsrt: no kp_detector_path and kp_pretrain_steps=0: FSRT trains with a frozen, randomly "
                           "initialised keypoint detector")

    def keypoint_pretraining_loss(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """Pretraining stage: L1 between detected keypoints and the landmark-derived ones of every frame."""
        if "source_landmarks" not in batch or "driving_landmarks" not in batch:
            raise RuntimeError("fsrt: kp_pretrain_steps > 0 needs 68-point landmarks in the training data "
                               "(annotations/<split>/<video>.npz); otherwise load a detector with kp_detector_path "
                               "and set kp_pretrain_steps to 0")
        frames = torch.cat([batch["source"], batch["driving"]], dim=1).flatten(0, 1)
        landmarks = torch.cat([batch["source_landmarks"], batch["driving_landmarks"]], dim=1).flatten(0, 1)
        target = landmarks_to_keypoints(landmarks.to(frames.dtype), tuple(frames.shape[-2:]))
        predicted = self.generator.detect(frames)["keypoints"]
        loss = keypoint_supervision_loss(predicted, target)
        return {"keypoints": loss, "total": loss}

    # ------------------------------------------------------------------------------------------ training
    def phase(self, step: int) -> int:
        """Training phase (1, 2 or 3) of FSRT iteration ``step`` (iterations after the detector pretraining)."""
        if step < self.hparams.phase2_start:
            return 1
        if step < self.hparams.phase3_start or self.discriminator is None:
            return 2
        return 3

    def generator_losses(self, batch: dict[str, Any], step: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Generator losses of FSRT iteration ``step`` (its phase decides which, Eq. 16-18).

        Returns:
            ``(losses, extras)``: weighted terms and their sum ``total``; ``extras`` holds what the discriminator
            step needs (``generated``/``real`` frames ``[B, 3, H, W]`` and driving ``keypoints``) from phase II on.
        """
        hp = self.hparams
        phase = self.phase(step)
        source, driving = batch["source"], batch["driving"][:, 0]
        b, s, _, h, w = source.shape
        device = source.device
        frames = torch.cat([source, driving[:, None]], dim=1)  # [B, S+1, 3, H, W]

        # Keypoints before the out-of-frame crop (around the source keypoints' box), mapped into it: some now lie
        # outside [-1, 1] (Sec. 3.1).
        keypoints = self.generator.detect(frames.flatten(0, 1))["keypoints"].unflatten(0, (b, s + 1))
        uncropped_driving, uncropped_kp_driving = frames[:, s], keypoints[:, s]
        boxes = out_of_frame_boxes(keypoints[:, :s].flatten(1, 2), hp.out_of_frame_probability,
                                   *hp.out_of_frame_margins)
        frames = crop_frames(frames, boxes)
        keypoints = crop_points(keypoints, boxes)
        kp_source, kp_driving = keypoints[:, :s], keypoints[:, s]

        # Colour jitters A1, A2 (shared by a sample's frames) and A3 (driving only), Sec. 3.2.
        strengths = (hp.jitter_brightness, hp.jitter_contrast, hp.jitter_saturation, hp.jitter_hue)
        a1 = color_jitter(frames, jitter_parameters(b, *strengths, device=device))
        a2 = color_jitter(frames, jitter_parameters(b, *strengths, device=device))
        # A3 and Omega act on the un-cropped driving frame, as the release does.
        driving_a3 = color_jitter(uncropped_driving, jitter_parameters(b, *strengths, device=device))
        driving_a = a2[:, s] if bool(torch.rand(()) < 0.5) else a1[:, s]  # I_D^A, A in {A1, A2}
        # The face box from the annotated landmarks when the data has them (a tighter face box than the
        # detector's 10 keypoints early in training), else from the keypoints.
        if "driving_landmarks" in batch:
            face = pixels_to_normalized(batch["driving_landmarks"][:, 0].to(frames.dtype), (h, w))
        else:
            face = uncropped_kp_driving
        driving_crop = crop_boxes(driving_a3, face_boxes(face, *hp.crop_margins))  # Omega(I_D^A3)

        # One frozen-detector pass for all expression inputs; gradients flow into the expression network only.
        expr_inputs = torch.cat([a1[:, :s].flatten(0, 1), a2[:, :s].flatten(0, 1), driving_a, driving_crop])
        detected = self.generator.detect(expr_inputs)
        expressions = self.generator.expression_encoder(detected["features"], detected["heatmaps"])
        e_src_a1, e_src_a2, e_drv, e_drv_crop = expressions.split([b * s, b * s, b, b])
        e_src_a1, e_src_a2 = e_src_a1.unflatten(0, (b, s)), e_src_a2.unflatten(0, (b, s))

        losses: dict[str, Tensor] = {}
        reg = regularisation_loss(e_src_a1, e_src_a2, e_drv, e_drv_crop, hp.invariance_weight, hp.covariance_weight,
                                  hp.variance_weight, statistical=hp.statistical_regularization)
        losses["regularisation"] = reg.pop("total")
        for name, value in reg.items():
            losses[f"reg_{name}"] = value.detach()  # logged parts, already inside "regularisation"

        use_uncropped = torch.rand(b, device=device) >= hp.crop_probability  # 25%: e of I_D^A
        e_decode = torch.where(use_uncropped[:, None], e_drv, e_drv_crop)
        # The encoder sees the A1 colours with the A2 expression vectors (Sec. 3.2).
        z = self.generator.encode(a1[:, :s], kp_source, e_src_a2)
        target = a1[:, s]  # [B, 3, H, W]
        target_flat = target.flatten(2).transpose(1, 2)  # [B, HW, 3]
        grid = pixel_grid(h, w, target.dtype, device)
        extras: dict[str, Tensor] = {}

        if phase == 1:
            index = random_pixel_indices(b, h * w, hp.num_sampled_pixels, device=device)
            predicted = self.generator.decode(z, grid[index], kp_driving, e_decode)
            wanted = target_flat.gather(1, index[..., None].expand(-1, -1, 3))
            losses["mse"] = hp.mse_weight * F.mse_loss(predicted, wanted)
        else:
            grad_index, rest_index = strided_pixel_indices(b, h, w, hp.grad_stride, device=device)
            predicted = self.generator.decode(z, grid[grad_index], kp_driving, e_decode)
            with torch.no_grad():
                rest = self.generator.decode(z, grid[rest_index], kp_driving, e_decode,
                                             chunk_size=self.generator.render_chunk)
            full = torch.zeros_like(target_flat)
            full = full.scatter(1, grad_index[..., None].expand(-1, -1, 3), predicted)
            full = full.scatter(1, rest_index[..., None].expand(-1, -1, 3), rest)
            generated = full.transpose(1, 2).reshape(b, 3, h, w)
            losses["mse"] = hp.mse_weight * F.mse_loss(generated, target)
            if self.perceptual is not None:
                losses["perceptual"] = self.perceptual(generated, target)
            extras = {"generated": generated, "real": target, "keypoints": kp_driving.detach()}
            if phase == 3 and step >= hp.phase3_start + hp.disc_warmup_steps:
                fake_out = self.discriminator(generated, keypoints=extras["keypoints"])
                with torch.no_grad():
                    real_out = self.discriminator(target, keypoints=extras["keypoints"])
                losses["gan"] = hp.gan_weight * lsgan_g_loss([pred for _, pred in fake_out.values()])
                losses["feature_matching"] = feature_matching_loss(
                    [feats for feats, _ in real_out.values()], [feats for feats, _ in fake_out.values()],
                    weights=self.feature_matching_weights)
        losses["total"] = sum(v for k, v in losses.items() if not k.startswith("reg_"))
        return losses, extras

    def discriminator_losses(self, extras: dict[str, Tensor]) -> dict[str, Tensor]:
        """Keypoint-aware LSGAN discriminator loss (phase III): ``disc_weight * (E(1 - D(x))^2 + E D(G)^2)``."""
        real_out = self.discriminator(extras["real"], keypoints=extras["keypoints"])
        fake_out = self.discriminator(extras["generated"].detach(), keypoints=extras["keypoints"])
        loss = self.hparams.disc_weight * lsgan_d_loss([p for _, p in real_out.values()],
                                                       [p for _, p in fake_out.values()])
        return {"discriminator": loss}

    # ------------------------------------------------------------------------------------------ optimisation
    def _named_optimizers(self) -> dict[str, Any]:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        names = ["generator"] + (["discriminator"] if self.discriminator is not None else []) + ["kp_detector"]
        return dict(zip(names, optimizers, strict=True))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hp = self.hparams
        iteration = int(self.train_iteration.item())
        optimizers = self._named_optimizers()
        batch_size = batch["source"].shape[0]
        logs: dict[str, Tensor | float] = {}
        if iteration < hp.kp_pretrain_steps:
            self.generator.set_kp_detector_trainable(True)
            optimizer = optimizers["kp_detector"]
            self.toggle_optimizer(optimizer)
            losses = self.keypoint_pretraining_loss(batch)
            manual_step(self, optimizer, losses["total"])
            self.untoggle_optimizer(optimizer)
            all_reduce_mean_(self.generator.kp_detector.buffers())
            logs["stage"] = 0.0
        else:
            self.generator.set_kp_detector_trainable(False)
            step = iteration - hp.kp_pretrain_steps
            if step == 0 and hp.positional_init:
                self._positional_init(batch)
            optimizer = optimizers["generator"]
            self.toggle_optimizer(optimizer)
            losses, extras = self.generator_losses(batch, step)
            manual_step(self, optimizer, losses["total"])
            self.untoggle_optimizer(optimizer)
            schedulers = self.lr_schedulers()
            schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
            schedulers[0].step()
            if self.phase(step) == 3:
                optimizer = optimizers["discriminator"]
                self.toggle_optimizer(optimizer)
                losses.update(self.discriminator_losses(extras))
                manual_step(self, optimizer, losses["discriminator"])
                self.untoggle_optimizer(optimizer)
                schedulers[1].step()
            logs["stage"] = float(self.phase(step))
            logs["lr"] = optimizers["generator"].param_groups[0]["lr"]
        self.train_iteration += 1
        logs.update({name: value.detach() for name, value in losses.items() if name != "total"})
        self.log_dict({f"train/{k}": v for k, v in logs.items()}, batch_size=batch_size)
        self.log("train/total", losses["total"].detach(), prog_bar=True, batch_size=batch_size)

    def _positional_init(self, batch: dict[str, Any]) -> None:
        """:meth:`FSRTGenerator.positional_attention_init` on the batch's source and driving frames (after the
        detector pretraining, whose keypoints and expression features it uses), identical on every rank."""
        frames = torch.cat([batch["source"].flatten(0, 1), batch["driving"].flatten(0, 1)])
        with torch.no_grad():
            keypoints, expression = self.generator.extract(frames)
        r2 = self.generator.positional_attention_init(frames, keypoints, expression)
        changed = [self.generator.encoder.per_patch_linear, self.generator.decoder.allocation_transformer.input_mlp,
                   self.generator.decoder.allocation_transformer.transformer.layers[0][0].fn]
        if world_size() > 1:
            for module in changed:  # each rank fitted its own batch: take rank 0's
                for parameter in module.parameters():
                    dist.broadcast(parameter.data, src=0)
        self.log("train/positional_init_r2", r2, batch_size=frames.shape[0], rank_zero_only=True)

    def configure_optimizers(self) -> tuple[list[torch.optim.Optimizer], list[torch.optim.lr_scheduler.LRScheduler]]:
        hp = self.hparams
        generator_parameters = [p for name in ("expression_encoder", "encoder", "decoder")
                                for p in getattr(self.generator, name).parameters()]
        optimizers = [adam(generator_parameters, lr=hp.lr)]
        schedulers = [torch.optim.lr_scheduler.LambdaLR(
            optimizers[0], WarmupExponentialDecay(hp.lr_warmup_steps, hp.lr_decay_rate, hp.lr_decay_steps))]
        if self.discriminator is not None:
            # The released trainer sets the discriminator's rate from the same global curve; its scheduler steps
            # only in phase III, so it starts at the phase-III offset.
            optimizers.append(adam(self.discriminator.parameters(), lr=hp.lr))
            schedulers.append(torch.optim.lr_scheduler.LambdaLR(optimizers[1], WarmupExponentialDecay(
                hp.lr_warmup_steps, hp.lr_decay_rate, hp.lr_decay_steps, offset=hp.phase3_start)))
        optimizers.append(adam(self.generator.kp_detector.parameters(), lr=hp.kp_lr))
        return optimizers, schedulers
