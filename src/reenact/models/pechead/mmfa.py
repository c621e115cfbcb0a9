"""Motion-Aware Multi-Scale Feature Alignment (PECHead Sec. 3.2, Fig. 3-4, Eq. 3).

* :class:`MotionEstimator` -- ``Φ``: FOMM's Gaussian-heatmap dense motion network (shared
  :class:`reenact.nn.dense_motion.DenseMotionNetwork`, no Jacobians) with an SE block on its last feature map
  (supplement 2.1), returning that feature map ``f^m`` too, which the deformable alignment needs.
* :class:`DeformableAlignment` -- Eq. 3: offsets ``δ = w + C^o(c(f^m, w))``, mask ``ε = σ(C^m(c(f^m, w)))``,
  ``f^d = D(f^r; δ, ε)`` with ``torchvision.ops.deform_conv2d`` (modulated DCN, Zhu et al. 2019); the flow
  ``w`` is the estimator's deformation in pixels, so a zero residual makes the DCN sample exactly where the
  warp does (flow-guided deformable alignment, Chan et al. 2022).
* :class:`MMFA` -- global motion from the learned keypoints on the half-resolution feature ``f^r_low``, local
  motion from the predefined landmarks on the full-resolution feature ``f^r``; per level the occlusion-aware
  warp ``f^w = W(f^r, w)·o + (1 − o)·f^r`` and the deformable alignment ``f^d``, fused, then the two levels are
  fused into the aligned feature ``f^a``. Table 4's ablations are ``mode`` values.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from reenact.nn.blocks import DownBlock2d, SameBlock2d, SEBlock
from reenact.nn.dense_motion import DenseMotionNetwork
from reenact.nn.warping import grid_to_flow, occlusion_blend, resize_grid, warp

MotionMode = Literal["mmfa", "kp", "lmk", "direct", "featcat"]
MOTION_MODES: tuple[str, ...] = ("mmfa", "kp", "lmk", "direct", "featcat")


class MotionEstimator(DenseMotionNetwork):
    """``Φ``: keypoint pairs -> deformation ``w [B, h, w, 2]``, occlusion ``o [B, 1, h, w]`` and the last feature
    map ``f^m [B, C_m, h, w]`` (after an SE block), computed from the source image resized to ``scale_factor``.

    Same arguments as :class:`DenseMotionNetwork`; ``kp_variance`` 0.01 as FOMM.
    """

    def __init__(self, num_keypoints: int, block_expansion: int = 64, num_blocks: int = 5,
                 max_features: int = 1024, scale_factor: float = 0.25, kp_variance: float = 0.01) -> None:
        super().__init__(num_keypoints, num_channels=3, block_expansion=block_expansion, num_blocks=num_blocks,
                         max_features=max_features, estimate_occlusion=True, scale_factor=scale_factor,
                         kp_variance=kp_variance)
        self.se = SEBlock(self.hourglass.out_filters, reduction=16)
        self.feature_channels = self.hourglass.out_filters

    def forward(self, source_image: Tensor, kp_source: Tensor, kp_driving: Tensor,  # type: ignore[override]
                jacobian_source: Tensor | None = None, jacobian_driving: Tensor | None = None) -> dict[str, Tensor]:
        source = self.down(source_image) if self.scale_factor != 1 else source_image
        b, _, h, w = source.shape
        heat = self.heatmap_representation((h, w), kp_source, kp_driving)
        motions = self.sparse_motions((h, w), kp_source, kp_driving)
        deformed = self.deformed_sources(source, motions)
        feature = self.se(self.hourglass(torch.cat([heat, deformed], dim=2).view(b, -1, h, w)))
        mask = F.softmax(self.mask(feature), dim=1)
        assert self.occlusion is not None
        return {"deformation": (motions * mask.unsqueeze(-1)).sum(dim=1), "mask": mask,
                "occlusion": torch.sigmoid(self.occlusion(feature)), "feature": feature}


def flow_offsets(flow: Tensor, kernel_size: int, groups: int) -> Tensor:
    """Pixel flow ``[B, 2, h, w]`` (dx, dy) -> ``deform_conv2d`` offsets ``[B, 2 * groups * k * k, h, w]``.

    torchvision orders offsets as (dy, dx) pairs per kernel tap and per offset group; every tap of every group
    gets the same displacement, so the DCN's sampling grid is the plain kernel shifted by the flow.
    """
    b, _, h, w = flow.shape
    pair = torch.stack([flow[:, 1], flow[:, 0]], dim=1)  # (dy, dx)
    return pair.repeat(1, groups * kernel_size * kernel_size, 1, 1).view(b, -1, h, w)


def modulated_deform_conv2d(feature: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, mask: Tensor,
                            padding: int) -> Tensor:
    """Modulated deformable convolution (DCNv2, Zhu et al. 2019; stride 1, dilation 1), the same function as
    ``torchvision.ops.deform_conv2d(feature, offset, weight, bias, padding=padding, mask=mask)``, written as
    bilinear sampling (``grid_sample``, zeros outside, which is torchvision's boundary rule) of every kernel tap
    followed by a 1x1 convolution over the ``C·k·k`` sampled columns.

    torchvision's CPU kernel loops over samples and columns and its backward dominates a training step at 64 px;
    this form runs the same arithmetic through ATen's vectorised ``grid_sample`` and ``conv2d``.

    ``feature [B, C, h, w]``, ``offset [B, 2 G k k, h, w]`` ((dy, dx) per tap and offset group), ``weight
    [O, C, k, k]``, ``mask [B, G k k, h, w]`` -> ``[B, O, h, w]``.
    """
    b, c, h, w = feature.shape
    out_channels, _, k, _ = weight.shape
    taps = k * k
    groups = offset.shape[1] // (2 * taps)
    off = offset.view(b, groups, taps, 2, h, w)
    tap = torch.arange(taps, device=feature.device)
    ky = (tap // k).to(offset.dtype).view(1, 1, taps, 1, 1)
    kx = (tap % k).to(offset.dtype).view(1, 1, taps, 1, 1)
    ys = torch.arange(h, device=feature.device, dtype=offset.dtype).view(1, 1, 1, h, 1)
    xs = torch.arange(w, device=feature.device, dtype=offset.dtype).view(1, 1, 1, 1, w)
    py = ys - padding + ky + off[:, :, :, 0]
    px = xs - padding + kx + off[:, :, :, 1]
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)  # align_corners=True
    sampled = F.grid_sample(feature.reshape(b * groups, c // groups, h, w), grid.view(b * groups, taps * h, w, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=True)
    sampled = sampled.view(b, groups, c // groups, taps, h, w) * mask.view(b, groups, 1, taps, h, w)
    return F.conv2d(sampled.reshape(b, c * taps, h, w), weight.reshape(out_channels, c * taps, 1, 1), bias)


class DeformableAlignment(nn.Module):
    """Eq. 3: flow-guided modulated deformable convolution.

    Args:
        channels: channels of ``f^r`` (in and out).
        motion_channels: channels of ``f^m``.
        hidden: width of the offset/mask conv blocks ``C^o``, ``C^m``.
        groups: deformable (offset) groups.
        kernel_size: DCN kernel.

    Forward: ``feature [B, C, h, w]`` (``f^r``), ``deformation [B, h', w', 2]`` (sampling grid ``w``),
    ``motion_feature [B, C_m, h'', w'']`` (``f^m``; both resized to ``h, w``) -> ``f^d [B, C, h, w]``.
    ``C^o`` ends in a zero-initialised conv, so at initialisation ``δ = w`` and the DCN samples exactly where the
    warp does (a stable start, as in BasicVSR++).
    """

    def __init__(self, channels: int, motion_channels: int, hidden: int = 64, groups: int = 8,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by the deformable groups ({groups})")
        self.groups = groups
        self.kernel_size = kernel_size
        #: ``"sampled"`` (:func:`modulated_deform_conv2d`, faster on CPU) or ``"torchvision"``: same function.
        self.implementation = "sampled"
        taps = groups * kernel_size * kernel_size
        self.trunk = nn.Sequential(
            nn.Conv2d(motion_channels + 2, hidden, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        )
        self.offset = nn.Conv2d(hidden, 2 * taps, 3, padding=1)  # C^o
        self.modulation = nn.Conv2d(hidden, taps, 3, padding=1)  # C^m
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def offsets_and_mask(self, deformation: Tensor, motion_feature: Tensor, size: tuple[int, int]
                         ) -> tuple[Tensor, Tensor]:
        """``δ [B, 2 G k k, h, w]`` (pixels) and ``ε [B, G k k, h, w]`` of Eq. 3."""
        flow = grid_to_flow(resize_grid(deformation, size))
        if motion_feature.shape[2:] != flow.shape[2:]:
            motion_feature = F.interpolate(motion_feature, size=size, mode="bilinear", align_corners=False)
        # The flow enters C^o/C^m in units of the feature size so the blocks see O(1) values at any resolution.
        hidden = self.trunk(torch.cat([motion_feature, flow / max(size)], dim=1))
        delta = flow_offsets(flow, self.kernel_size, self.groups) + self.offset(hidden)
        return delta, torch.sigmoid(self.modulation(hidden))

    def forward(self, feature: Tensor, deformation: Tensor, motion_feature: Tensor) -> Tensor:
        size = (feature.shape[2], feature.shape[3])
        delta, mask = self.offsets_and_mask(deformation, motion_feature, size)
        pad = self.kernel_size // 2
        if self.implementation == "torchvision":
            return deform_conv2d(feature, delta.to(feature.dtype), self.weight, self.bias, padding=pad,
                                 mask=mask.to(feature.dtype))
        return modulated_deform_conv2d(feature, delta.to(feature.dtype), self.weight, self.bias,
                                       mask.to(feature.dtype), pad)


class AlignedLevel(nn.Module):
    """One MMFA level: ``f^w = W(f^r, w)·o + (1 − o)·f^r`` and (optionally) ``f^d`` of Eq. 3, fused by a conv.

    Forward: ``feature [B, C, h, w]``, the :class:`MotionEstimator` output -> ``[B, C, h, w]``.
    """

    def __init__(self, channels: int, motion_channels: int, deformable: bool = True, hidden: int = 64,
                 groups: int = 8) -> None:
        super().__init__()
        self.alignment = DeformableAlignment(channels, motion_channels, hidden, groups) if deformable else None
        self.fuse = SameBlock2d(channels * (2 if deformable else 1), channels, kernel_size=3, padding=1)

    def forward(self, feature: Tensor, motion: dict[str, Tensor]) -> Tensor:
        warped = occlusion_blend(warp(feature, motion["deformation"]), feature, motion["occlusion"])
        if self.alignment is None:
            return self.fuse(warped)
        aligned = self.alignment(feature, motion["deformation"], motion["feature"])
        return self.fuse(torch.cat([warped, aligned], dim=1))


class MMFA(nn.Module):
    """Motion-aware multi-scale feature alignment (Sec. 3.2) and the ablations of Table 4.

    Args:
        channels: ``C^2``, channels of the full-resolution raw feature ``f^r``.
        low_channels: ``C^1``, channels of ``f^r_low`` (made from ``f^r`` by a down block).
        feature_scale: ``h / H`` (the encoder downsamples by 4: 0.25).
        num_keypoints: ``K`` learned keypoints; ``num_landmarks``: 68 predefined ones.
        mode: ``"mmfa"`` (both estimators, two levels: the paper's MMFA), ``"kp"`` (learned keypoints only),
            ``"lmk"`` (predefined landmarks only), ``"direct"`` (both point sets merged into one estimator),
            ``"featcat"`` (both estimators on the single full-resolution level, features concatenated).
        deformable: use the deformable alignment of Eq. 3 (otherwise the warp only).
        motion_block_expansion, motion_num_blocks, motion_max_features: sizes of each ``Φ``'s hourglass.
        dcn_hidden, dcn_groups: sizes of the deformable alignment.

    Forward: ``source_image [B, 3, H, W]``, ``feature [B, C, h, w]`` (``f^r``), keypoints ``k^s, k^d [B, K, 2]``,
    landmarks ``l^s, l^d [B, 68, 2]`` -> dict ``aligned [B, C, h, w]`` (``f^a``), ``local``/``global`` motion
    dicts (whichever exist) and ``local_deformation`` (the deformation CAP's two-step warp uses: the local one,
    or the only one of a single-estimator ablation).
    """

    def __init__(self, channels: int, low_channels: int, feature_scale: float = 0.25, num_keypoints: int = 10,
                 num_landmarks: int = 68, mode: MotionMode = "mmfa", deformable: bool = True,
                 motion_block_expansion: int = 64, motion_num_blocks: int = 5, motion_max_features: int = 1024,
                 dcn_hidden: int = 64, dcn_groups: int = 8, kp_variance: float = 0.01) -> None:
        super().__init__()
        if mode not in MOTION_MODES:
            raise ValueError(f"unknown MMFA mode {mode!r}; expected one of {MOTION_MODES}")
        self.mode = mode
        hg = {"block_expansion": motion_block_expansion, "max_features": motion_max_features,
              "kp_variance": kp_variance}
        # The half-resolution level's hourglass is one block shallower: its input is already half the size.
        low_blocks = max(1, motion_num_blocks - 1)
        self.global_motion: MotionEstimator | None = None
        self.local_motion: MotionEstimator | None = None
        self.down: DownBlock2d | None = None
        if mode == "mmfa":
            self.global_motion = MotionEstimator(num_keypoints, num_blocks=low_blocks,
                                                 scale_factor=feature_scale / 2, **hg)
            self.local_motion = MotionEstimator(num_landmarks, num_blocks=motion_num_blocks,
                                                scale_factor=feature_scale, **hg)
            self.down = DownBlock2d(channels, low_channels)
            self.global_level = AlignedLevel(low_channels, self.global_motion.feature_channels, deformable,
                                             dcn_hidden, dcn_groups)
            self.local_level = AlignedLevel(channels, self.local_motion.feature_channels, deformable,
                                            dcn_hidden, dcn_groups)
            self.fuse = SameBlock2d(channels + low_channels, channels)
        elif mode == "featcat":
            self.global_motion = MotionEstimator(num_keypoints, num_blocks=motion_num_blocks,
                                                 scale_factor=feature_scale, **hg)
            self.local_motion = MotionEstimator(num_landmarks, num_blocks=motion_num_blocks,
                                                scale_factor=feature_scale, **hg)
            self.global_level = AlignedLevel(channels, self.global_motion.feature_channels, deformable,
                                             dcn_hidden, dcn_groups)
            self.local_level = AlignedLevel(channels, self.local_motion.feature_channels, deformable,
                                            dcn_hidden, dcn_groups)
            self.fuse = SameBlock2d(2 * channels, channels)
        else:
            count = {"kp": num_keypoints, "lmk": num_landmarks, "direct": num_keypoints + num_landmarks}[mode]
            estimator = MotionEstimator(count, num_blocks=motion_num_blocks, scale_factor=feature_scale, **hg)
            if mode == "kp":
                self.global_motion = estimator
            else:
                self.local_motion = estimator
            self.single_level = AlignedLevel(channels, estimator.feature_channels, deformable, dcn_hidden,
                                             dcn_groups)

    def forward(self, source_image: Tensor, feature: Tensor, kp_source: Tensor, kp_driving: Tensor,
                lmk_source: Tensor, lmk_driving: Tensor) -> dict[str, Tensor | dict[str, Tensor]]:
        out: dict[str, Tensor | dict[str, Tensor]] = {}
        if self.mode in ("mmfa", "featcat"):
            assert self.global_motion is not None and self.local_motion is not None
            motion_g = self.global_motion(source_image, kp_source, kp_driving)
            motion_l = self.local_motion(source_image, lmk_source, lmk_driving)
            local = self.local_level(feature, motion_l)
            if self.mode == "mmfa":
                assert self.down is not None
                low = self.global_level(self.down(feature), motion_g)
                low = F.interpolate(low, size=feature.shape[2:], mode="bilinear", align_corners=False)
            else:
                low = self.global_level(feature, motion_g)
            out.update({"global": motion_g, "local": motion_l, "local_deformation": motion_l["deformation"],
                        "aligned": self.fuse(torch.cat([local, low], dim=1))})
            return out
        if self.mode == "kp":
            assert self.global_motion is not None
            motion = self.global_motion(source_image, kp_source, kp_driving)
            out["global"] = motion
        else:
            assert self.local_motion is not None
            if self.mode == "lmk":
                motion = self.local_motion(source_image, lmk_source, lmk_driving)
            else:
                motion = self.local_motion(source_image, torch.cat([kp_source, lmk_source], 1),
                                           torch.cat([kp_driving, lmk_driving], 1))
            out["local"] = motion
        out.update({"local_deformation": motion["deformation"], "aligned": self.single_level(feature, motion)})
        return out


__all__ = ["MMFA", "MOTION_MODES", "AlignedLevel", "DeformableAlignment", "MotionEstimator", "flow_offsets",
           "modulated_deform_conv2d"]
