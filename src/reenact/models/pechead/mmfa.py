"""Motion-Aware Multi-Scale Feature Alignment (PECHead Sec. 3.2, Fig. 3-4, Eq. 3).

* :class:`MotionEstimator` -- ``Φ``: FOMM's Gaussian-heatmap dense motion network (shared
  :class:`reenact.nn.dense_motion.DenseMotionNetwork`, no Jacobians) with an SE block on its last feature map
  (supplement 2.1), returning that feature map ``f^m`` too, which the deformable alignment needs.
* :class:`~reenact.nn.deformable.DeformableAlignment` (shared, in ``reenact.nn``) -- Eq. 3: offsets
  ``δ = w + C^o(c(f^m, w))``, mask ``ε = σ(C^m(c(f^m, w)))``, ``f^d = D(f^r; δ, ε)`` (modulated DCN, Zhu et
  al. 2019); the flow
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

from reenact.nn.blocks import DownBlock2d, SameBlock2d, SEBlock
from reenact.nn.deformable import DeformableAlignment
from reenact.nn.dense_motion import DenseMotionNetwork
from reenact.nn.warping import occlusion_blend, warp

MotionMode = Literal["mmfa", "kp", "lmk", "direct", "featcat"]
MOTION_MODES: tuple[str, ...] = ("mmfa", "kp", "lmk", "direct", "featcat")


class MotionEstimator(DenseMotionNetwork):
    """``Φ``: keypoint pairs -> deformation ``w [B, h, w, 2]``, occlusion ``o [B, 1, h, w]`` and the last feature
    map ``f^m [B, C_m, h, w]`` (after an SE block), computed from the source image resized to ``scale_factor``.

    Same arguments as :class:`DenseMotionNetwork`; ``kp_variance`` 0.01 as FOMM.
    """

    def __init__(self, num_keypoints: int, block_expansion: int = 64, num_blocks: int = 5,
                 max_features: int = 1024, scale_factor: float = 0.25, kp_variance: float = 0.01,
                 head_kernel_size: int = 7) -> None:
        super().__init__(num_keypoints, num_channels=3, block_expansion=block_expansion, num_blocks=num_blocks,
                         max_features=max_features, estimate_occlusion=True, scale_factor=scale_factor,
                         kp_variance=kp_variance, head_kernel_size=head_kernel_size)
        self.se = SEBlock(self.hourglass.out_filters, reduction=16)
        self.feature_channels = self.hourglass.out_filters

    def refine(self, feature: Tensor) -> Tensor:
        """The SE block on the hourglass output (supplement 2.1); the rest of the forward is FOMM's."""
        return self.se(feature)


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
        motion_head_kernel: kernel of each ``Φ``'s mask and occlusion convolutions (FOMM: 7).

    Forward: ``source_image [B, 3, H, W]``, ``feature [B, C, h, w]`` (``f^r``), keypoints ``k^s, k^d [B, K, 2]``,
    landmarks ``l^s, l^d [B, 68, 2]`` -> dict ``aligned [B, C, h, w]`` (``f^a``), ``local``/``global`` motion
    dicts (whichever exist) and ``local_deformation`` (the deformation CAP's two-step warp uses: the local one,
    or the only one of a single-estimator ablation).
    """

    def __init__(self, channels: int, low_channels: int, feature_scale: float = 0.25, num_keypoints: int = 10,
                 num_landmarks: int = 68, mode: MotionMode = "mmfa", deformable: bool = True,
                 motion_block_expansion: int = 64, motion_num_blocks: int = 5, motion_max_features: int = 1024,
                 dcn_hidden: int = 64, dcn_groups: int = 8, kp_variance: float = 0.01,
                 motion_head_kernel: int = 7) -> None:
        super().__init__()
        if mode not in MOTION_MODES:
            raise ValueError(f"unknown MMFA mode {mode!r}; expected one of {MOTION_MODES}")
        self.mode = mode
        hg = {"block_expansion": motion_block_expansion, "max_features": motion_max_features,
              "kp_variance": kp_variance, "head_kernel_size": motion_head_kernel}
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


__all__ = ["MMFA", "MOTION_MODES", "AlignedLevel", "MotionEstimator"]
