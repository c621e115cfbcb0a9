"""Lightning wrapper of :class:`~reenact.models.keypoint_warp.torch_model.KeypointWarpGenerator`.

Training follows FOMM (Siarohin et al. 2019, Sec. 3.4) without Jacobians and without the GAN: L1
reconstruction of the driving frame, an optional multi-scale VGG19 perceptual loss (real ImageNet
weights only, see :mod:`reenact.weights`) and the keypoint equivariance loss under a random thin-plate
spline transform, which keeps the unsupervised keypoints tied to image content.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from reenact.data.datasets import SamplingSpec
from reenact.models.base import ReenactmentModule
from reenact.models.keypoint_warp.torch_model import KeypointWarpConfig, KeypointWarpGenerator
from reenact.nn.optim import adam
from reenact.nn.tps import RandomTPS


class KeypointWarp(ReenactmentModule):
    """The smallest learned reference model: unsupervised keypoints, dense motion, feature warping.

    Args:
        generator: the architecture, :class:`~reenact.models.keypoint_warp.torch_model.KeypointWarpConfig` (or a
            mapping of its fields: ``create_model("keypoint-warp", generator={"block_expansion": 32})``,
            ``--model.generator.block_expansion 32``); stored as a plain mapping.
        lr: Adam learning rate (FOMM: 2e-4, betas (0.5, 0.999)).
        reconstruction_weight: weight of the L1 loss on the generated driving frame.
        perceptual_weight: weight of the VGG19 perceptual loss; 0 disables it (no weights needed).
        equivariance_weight: weight of the keypoint equivariance loss (FOMM: 10).
        tps_sigma_affine, tps_sigma_tps, tps_points: random TPS of the equivariance loss (FOMM: 0.05, 0.005, 5).
        adapt_scale: in relative mode, scale the driving keypoints' motion by the source/driving convex-hull size
            ratio (FOMM's ``adapt_movement_scale``; off by default, as in FOMM's demo).
    """

    registry_name = "keypoint-warp"
    generator_config = KeypointWarpConfig
    train_sampling = SamplingSpec(mode="pair", num_source=1, num_driving=1)

    def __init__(self, image_size: int = 64,
                 generator: KeypointWarpConfig = KeypointWarpConfig(),  # noqa: B008 - frozen, shared safely
                 lr: float = 2e-4,
                 reconstruction_weight: float = 10.0, perceptual_weight: float = 0.0,
                 equivariance_weight: float = 10.0, tps_sigma_affine: float = 0.05, tps_sigma_tps: float = 0.005,
                 tps_points: int = 5, adapt_scale: bool = False) -> None:
        super().__init__(image_size=image_size)
        self.save_hyperparameters()
        config = self.generator_config_from_hparams()
        self.generator = KeypointWarpGenerator(config)
        from reenact.nn.losses import VGG19Perceptual

        # Built when training starts (ReenactmentModule.setup): inference and loading need no VGG19 file.
        self.defer_perceptual_loss(VGG19Perceptual if perceptual_weight > 0 else None)

    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, relative: bool = False) -> torch.Tensor:
        """``source`` [B, S, 3, H, W] (first frame used), ``driving`` [B, T, 3, H, W] -> [B, T, 3, H, W]."""
        return self.generator.animate(source[:, 0], driving, relative=relative,
                                      adapt_scale=self.hparams.adapt_scale)

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The weighted training losses of one pair batch; ``total`` is their sum."""
        hp = self.hparams
        source, driving = batch["source"][:, 0], batch["driving"][:, 0]
        output = self.generator(source, driving)
        losses = {"reconstruction": hp.reconstruction_weight * F.l1_loss(output["generated"], driving)}
        if self.perceptual is not None:
            losses["perceptual"] = hp.perceptual_weight * self.perceptual(output["generated"], driving)
        if hp.equivariance_weight > 0:
            transform = RandomTPS(driving.shape[0], sigma_affine=hp.tps_sigma_affine, sigma_tps=hp.tps_sigma_tps,
                                  points_tps=hp.tps_points, device=driving.device, dtype=driving.dtype)
            transformed = transform.transform_frame(driving)
            keypoints_transformed = self.generator.keypoint_detector(transformed)["keypoints"]
            # Keypoints found on the warped frame, mapped back, must land on those of the original frame.
            mapped = transform.warp_coordinates(keypoints_transformed)
            losses["equivariance"] = hp.equivariance_weight * (output["keypoints_driving"] - mapped).abs().mean()
        losses["total"] = sum(losses.values())
        return losses

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        losses = self.losses(batch)
        batch_size = batch["source"].shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value, prog_bar=name == "total", batch_size=batch_size)
        return losses["total"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.generator.parameters(), lr=self.hparams.lr, betas=(0.5, 0.999))
