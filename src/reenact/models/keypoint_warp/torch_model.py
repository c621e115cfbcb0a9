"""A small FOMM-style keypoint-warping generator: the project's smallest *learned* baseline.

It follows FOMM (Siarohin et al. 2019, "First Order Motion Model for Image Animation") without the
first-order (Jacobian) terms, i.e. the zero-order keypoint variant of FOMM's ``OcclusionAwareGenerator``:

1. :class:`reenact.nn.KeypointDetector` finds ``K`` unsupervised keypoints in source and driving frames;
2. :class:`reenact.nn.DenseMotionNetwork` turns them into a backward deformation (driving -> source) and an
   occlusion map at ``scale_factor`` times the image resolution;
3. the source is encoded (SameBlock2d 7x7 + ``num_down_blocks`` DownBlock2d), warped by the deformation,
   multiplied by the occlusion map, passed through ResBlock2d bottleneck blocks and decoded
   (``num_down_blocks`` UpBlock2d + 7x7 conv + sigmoid) to an image in ``[0, 1]``.

Pure PyTorch (no Lightning); the training wrapper lives elsewhere. Default sizes give ~1.3 M parameters
and run comfortably on a CPU at 64x64.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from reenact.nn.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from reenact.nn.config import ArchitectureConfig
from reenact.nn.dense_motion import DenseMotionNetwork
from reenact.nn.keypoints import KeypointDetector, relative_keypoints
from reenact.nn.warping import occlusion_blend, warp


@dataclass(frozen=True)
class KeypointWarpConfig(ArchitectureConfig):
    """Architecture of :class:`KeypointWarpGenerator` (the fields are described there), declared once: the
    Lightning module takes it as ``generator`` (``model.generator.*``)."""

    num_keypoints: int = 10
    image_channels: int = 3
    block_expansion: int = 32
    max_features: int = 128
    num_down_blocks: int = 2
    num_bottleneck_blocks: int = 2
    kp_block_expansion: int = 16
    kp_max_features: int = 128
    kp_num_blocks: int = 3
    dense_motion_block_expansion: int = 16
    dense_motion_max_features: int = 128
    dense_motion_num_blocks: int = 3
    scale_factor: float = 0.5
    temperature: float = 0.1
    kp_variance: float = 0.01
    estimate_occlusion: bool = True
    warped_source_skip: bool = False


class KeypointWarpGenerator(nn.Module):
    """Keypoint detector + dense motion + occlusion-aware warping generator.

    Built from a :class:`KeypointWarpConfig` (``config``) with keyword ``overrides`` of its fields, which are:
        num_keypoints: ``K`` unsupervised keypoints.
        image_channels: image channels (3).
        block_expansion: generator width of the first block; block ``i`` has
            ``min(max_features, block_expansion * 2**i)`` channels.
        max_features: channel cap of the generator.
        num_down_blocks: encoder downsamplings (the image size must be divisible by ``2**num_down_blocks``).
        num_bottleneck_blocks: ResBlock2d blocks at the lowest resolution.
        kp_block_expansion, kp_max_features, kp_num_blocks: keypoint-detector hourglass.
        dense_motion_block_expansion, dense_motion_max_features, dense_motion_num_blocks: dense-motion
            hourglass.
        scale_factor: keypoints and motion are computed at this fraction of the image size
            (``H * scale_factor`` must be divisible by ``2**kp_num_blocks`` and
            ``2**dense_motion_num_blocks``).
        temperature: keypoint heatmap softmax temperature.
        kp_variance: variance of the keypoint Gaussians fed to the dense-motion network.
        estimate_occlusion: predict and apply an occlusion map.
        warped_source_skip: add the warped source image to the decoder's output in logit space,
            ``generated = sigmoid(final(h) + logit(warp(source)))``, with ``final`` zero-initialised: the untrained
            generator outputs the warped source instead of gray, so a short CPU training starts from a sharp
            copy of the source and learns motion and corrections (see the README's training recipe). Off is
            FOMM's decoder exactly.

    ``forward(source [B, C, H, W], driving [B, C, H, W])`` in ``[0, 1]`` -> dict with
        ``generated [B, C, H, W]`` in ``[0, 1]``,
        ``keypoints_source``, ``keypoints_driving`` ``[B, K, 2]`` in ``[-1, 1]`` (x, y),
        ``deformation [B, h, w, 2]`` (sampling grid into the source, ``h = H * scale_factor``),
        ``occlusion [B, 1, h, w]`` (ones when ``estimate_occlusion`` is off),
        ``deformed [B, C, H, W]`` (the source image warped by the deformation, for inspection/losses).
    """

    def __init__(self, config: KeypointWarpConfig | Mapping[str, Any] | None = None, **overrides: Any) -> None:
        super().__init__()
        c = self.config = KeypointWarpConfig.resolve(config, **overrides)
        self.num_keypoints = c.num_keypoints
        self.num_down_blocks = c.num_down_blocks
        self.keypoint_detector = KeypointDetector(
            num_keypoints=c.num_keypoints,
            num_channels=c.image_channels,
            block_expansion=c.kp_block_expansion,
            max_features=c.kp_max_features,
            num_blocks=c.kp_num_blocks,
            temperature=c.temperature,
            scale_factor=c.scale_factor,
            estimate_jacobian=False,
            pad=0,
        )
        self.dense_motion_network = DenseMotionNetwork(
            num_keypoints=c.num_keypoints,
            num_channels=c.image_channels,
            block_expansion=c.dense_motion_block_expansion,
            num_blocks=c.dense_motion_num_blocks,
            max_features=c.dense_motion_max_features,
            estimate_occlusion=c.estimate_occlusion,
            scale_factor=c.scale_factor,
            kp_variance=c.kp_variance,
        )

        def width(i: int) -> int:
            return min(c.max_features, c.block_expansion * 2**i)

        self.first = SameBlock2d(c.image_channels, c.block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(
            [DownBlock2d(width(i), width(i + 1)) for i in range(c.num_down_blocks)]
        )
        # Named r0, r1, ... like FOMM's OcclusionAwareGenerator so its bottleneck weights map by name.
        self.bottleneck = nn.Sequential()
        for i in range(c.num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(c.num_down_blocks)))
        self.up_blocks = nn.ModuleList(
            [
                UpBlock2d(width(c.num_down_blocks - i), width(c.num_down_blocks - i - 1))
                for i in range(c.num_down_blocks)
            ]
        )
        self.final = nn.Conv2d(c.block_expansion, c.image_channels, kernel_size=7, padding=3)
        self.warped_source_skip = c.warped_source_skip
        if c.warped_source_skip:
            nn.init.zeros_(self.final.weight)
            nn.init.zeros_(self.final.bias)

    # ----------------------------------------------------------------------------------------- pieces

    def detect(self, image: Tensor) -> Tensor:
        """Keypoints ``[B, K, 2]`` of ``image [B, C, H, W]``."""
        return self.keypoint_detector(image)["keypoints"]

    def encode(self, source: Tensor) -> Tensor:
        """Source features ``[B, width(num_down_blocks), H / 2**n, W / 2**n]``."""
        out = self.first(source)
        for block in self.down_blocks:
            out = block(out)
        return out

    def generate(
        self, source: Tensor, source_features: Tensor, kp_source: Tensor, kp_driving: Tensor
    ) -> dict[str, Tensor]:
        """Render the source with the motion ``kp_source -> kp_driving`` (features from :meth:`encode`)."""
        motion = self.dense_motion_network(source, kp_source=kp_source, kp_driving=kp_driving)
        deformation = motion["deformation"]
        occlusion = motion.get("occlusion")
        if occlusion is None:
            occlusion = deformation.new_ones(deformation.shape[0], 1, *deformation.shape[1:3])
        # FOMM masks occluded regions to zero and lets the decoder inpaint them.
        out = occlusion_blend(warp(source_features, deformation), None, occlusion)
        out = self.bottleneck(out)
        for block in self.up_blocks:
            out = block(out)
        deformed = warp(source, deformation)
        logits = self.final(out)
        if self.warped_source_skip:
            # 1e-3 keeps the logit finite where the warp samples outside the image (zeros) or pure white.
            logits = logits + torch.logit(deformed.clamp(1e-3, 1 - 1e-3))
        return {
            "generated": torch.sigmoid(logits),
            "deformation": deformation,
            "occlusion": occlusion,
            "deformed": deformed,
        }

    # ----------------------------------------------------------------------------------------- API

    def forward(self, source: Tensor, driving: Tensor) -> dict[str, Tensor]:
        kp_source = self.detect(source)
        kp_driving = self.detect(driving)
        out = self.generate(source, self.encode(source), kp_source, kp_driving)
        out["keypoints_source"] = kp_source
        out["keypoints_driving"] = kp_driving
        return out

    def animate(
        self,
        source: Tensor,
        driving: Tensor,
        relative: bool = False,
        driving_initial: Tensor | None = None,
        adapt_scale: bool = False,
    ) -> Tensor:
        """Animate one source image with a driving video.

        Args:
            source: ``[B, C, H, W]`` in ``[0, 1]``.
            driving: ``[B, T, C, H, W]`` in ``[0, 1]``.
            relative: FOMM relative motion transfer: ``kp = kp_src + (kp_drv_t - kp_drv_initial) * s``
                (see :func:`reenact.nn.keypoints.relative_keypoints`); otherwise the driving keypoints are
                used as they are (absolute).
            driving_initial: ``[B, C, H, W]`` driving frame aligned with the source for relative mode
                (default: the first driving frame).
            adapt_scale: scale relative motion by the convex-hull size ratio ``s``.

        Returns:
            ``[B, T, C, H, W]`` in ``[0, 1]``. Runs frame by frame (memory independent of ``T``); gradient
            and train/eval mode are the caller's choice.
        """
        if driving.dim() != 5:
            raise ValueError(f"driving must be [B, T, C, H, W], got {tuple(driving.shape)}")
        kp_source = self.detect(source)
        features = self.encode(source)
        kp_initial = None
        if relative:
            initial = driving[:, 0] if driving_initial is None else driving_initial
            kp_initial = self.detect(initial)
        frames = []
        for t in range(driving.shape[1]):
            kp_driving = self.detect(driving[:, t])
            if kp_initial is not None:
                kp_driving = relative_keypoints(kp_source, kp_driving, kp_initial, adapt_scale=adapt_scale)
            frames.append(self.generate(source, features, kp_source, kp_driving)["generated"])
        return torch.stack(frames, dim=1)
