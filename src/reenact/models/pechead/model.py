"""PECHead generator ``G`` (Gao et al. 2023, Sec. 3, Fig. 2a; supplement Fig. 1): pure torch.

Per frame ``t`` (source frame ``x^s_t``, the face-model coefficients of source and driving, landmarks ``l^s, l^d``):

1. ``k^s = E(x^s, p^s, e^s)``, ``k^d = E(x^s, p^d, e^d)`` (Eq. 2, :class:`PoseAwareKeypointEstimator`);
2. encoder (a 7x7 stem and two down blocks) -> raw feature ``f^r`` at 1/4 resolution;
3. MMFA (Sec. 3.2, Eq. 3) -> aligned feature ``f^a``;
4. CAP (Sec. 3.3, Eq. 4) -> adapted feature ``f^c`` (skipped in the ``use_cap = False`` ablation: ``f^c = f^a``);
5. decoder (residual bottleneck blocks, two up blocks, 7x7 conv, sigmoid) -> ``x^_d``.

The Face Shape Reconstructor ``R`` is a separate module (trained and frozen on its own, supplement 2.3); the
Lightning wrapper :mod:`reenact.models.pechead.module` turns its coefficients into the inputs used here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from reenact.models.pechead.cap import CAP
from reenact.models.pechead.keypoints import PoseAwareKeypointEstimator
from reenact.models.pechead.mmfa import MMFA, MotionMode
from reenact.nn.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d


class PECHeadGenerator(nn.Module):
    """``G`` with ``E`` inside (``E`` is trained with the generator's losses).

    Args:
        cond_dim: size of the ``(p, e)`` conditioning vector.
        num_keypoints: ``K`` learned keypoints (10); ``num_landmarks``: predefined landmarks (68).
        block_expansion, max_features: encoder/decoder widths (stem ``e``, then ``2e``, ``4e``, capped).
        num_bottleneck_blocks: residual blocks between CAP and the up blocks.
        kp_block_expansion, kp_max_features, kp_num_blocks, kp_scale_factor: sizes of ``E``.
        motion_block_expansion, motion_max_features, motion_num_blocks: sizes of each motion estimator ``Φ``.
        dcn_hidden, dcn_groups: deformable alignment sizes.
        motion_mode: MMFA or a Table 4 ablation (see :class:`MMFA`); ``deformable``: Eq. 3 on/off;
        use_cap: CAP on/off (``"mmfa"`` vs ``"full"`` in Table 4).
        cap_adaptation_blocks, cap_refinement_blocks: sizes of CAP.

    Forward (:meth:`forward`): sequences ``source [B, T, 3, H, W]``, ``cond_source``/``cond_driving [B, T, D]``,
    ``lmk_source``/``lmk_driving [B, T, 68, 2]`` (``reenact.nn`` normalised), ``frame_grids [B, T, H, W, 2]`` or
    ``None`` (frame flow between consecutive source frames; entry 0 unused) -> dict ``image [B, T, 3, H, W]``,
    ``kp_source``/``kp_driving [B, T, K, 2]``, ``local_deformation``/``global_deformation [B, T, h, w, 2]``
    (whichever the mode has) and ``state`` (CAP state after the last frame, or ``None``).
    """

    def __init__(self, cond_dim: int, num_keypoints: int = 10, num_landmarks: int = 68, block_expansion: int = 64,
                 max_features: int = 512, num_bottleneck_blocks: int = 6, kp_block_expansion: int = 32,
                 kp_max_features: int = 1024, kp_num_blocks: int = 4, kp_scale_factor: float = 0.25,
                 motion_block_expansion: int = 64, motion_max_features: int = 1024, motion_num_blocks: int = 5,
                 dcn_hidden: int = 64, dcn_groups: int = 8, motion_mode: MotionMode = "mmfa",
                 deformable: bool = True, use_cap: bool = True, cap_adaptation_blocks: int = 2,
                 cap_refinement_blocks: int = 2, kp_variance: float = 0.01) -> None:
        super().__init__()
        self.keypoint_estimator = PoseAwareKeypointEstimator(num_keypoints, cond_dim, kp_block_expansion,
                                                             kp_max_features, kp_num_blocks, kp_scale_factor)
        widths = [min(max_features, block_expansion * 2**i) for i in range(3)]
        channels = widths[2]
        self.first = SameBlock2d(3, widths[0], kernel_size=7, padding=3)
        self.encoder = nn.Sequential(DownBlock2d(widths[0], widths[1]), DownBlock2d(widths[1], widths[2]))
        self.mmfa = MMFA(channels, min(max_features, 2 * channels), feature_scale=0.25,
                         num_keypoints=num_keypoints, num_landmarks=num_landmarks, mode=motion_mode,
                         deformable=deformable, motion_block_expansion=motion_block_expansion,
                         motion_num_blocks=motion_num_blocks, motion_max_features=motion_max_features,
                         dcn_hidden=dcn_hidden, dcn_groups=dcn_groups, kp_variance=kp_variance)
        self.cap = CAP(channels, cap_adaptation_blocks, cap_refinement_blocks) if use_cap else None
        self.bottleneck = nn.Sequential(*[ResBlock2d(channels) for _ in range(num_bottleneck_blocks)])
        self.decoder = nn.Sequential(UpBlock2d(widths[2], widths[1]), UpBlock2d(widths[1], widths[0]))
        self.final = nn.Conv2d(widths[0], 3, kernel_size=7, padding=3)

    def encode(self, image: Tensor) -> Tensor:
        """Raw feature ``f^r [B, C, H/4, W/4]`` of ``image [B, 3, H, W]``."""
        return self.encoder(self.first(image))

    def keypoints(self, source: Tensor, cond: Tensor) -> Tensor:
        """``E(x^s, p, e)`` (Eq. 2): ``[B, 3, H, W]``, ``[B, D]`` -> ``[B, K, 2]``."""
        return self.keypoint_estimator(source, cond)

    def decode(self, feature: Tensor) -> Tensor:
        """``f^c [B, C, h, w]`` -> image ``[B, 3, 4h, 4w]`` in ``[0, 1]``."""
        return torch.sigmoid(self.final(self.decoder(self.bottleneck(feature))))

    def step(self, source: Tensor, cond_source: Tensor, cond_driving: Tensor, lmk_source: Tensor,
             lmk_driving: Tensor, frame_grid: Tensor | None = None, state: dict[str, Tensor] | None = None,
             raw: Tensor | None = None) -> dict[str, Any]:
        """One frame: ``source [B, 3, H, W]``, ``cond_* [B, D]``, ``lmk_* [B, 68, 2]``, ``frame_grid``
        (``w_{t-1->t}``, ``None`` when the source did not change) and CAP ``state`` -> dict ``image``,
        ``kp_source``, ``kp_driving``, ``mmfa`` (MMFA outputs), ``state``. ``raw`` reuses an already encoded
        ``f^r`` (the source does not change while one image is animated)."""
        b = source.shape[0]
        # One batched call of E for k^s and k^d (Eq. 2: both from the source frame, different (p, e)).
        kps = self.keypoints(torch.cat([source, source]), torch.cat([cond_source, cond_driving]))
        kp_source, kp_driving = kps[:b], kps[b:]
        if raw is None:
            raw = self.encode(source)
        mmfa = self.mmfa(source, raw, kp_source, kp_driving, lmk_source, lmk_driving)
        feature = mmfa["aligned"]
        new_state = None
        if self.cap is not None:
            feature, new_state = self.cap(feature, raw, mmfa["local_deformation"],
                                          frame_grid if state is not None else None, state)
        return {"image": self.decode(feature), "kp_source": kp_source, "kp_driving": kp_driving, "mmfa": mmfa,
                "state": new_state, "raw": raw}

    def forward(self, source: Tensor, cond_source: Tensor, cond_driving: Tensor, lmk_source: Tensor,
                lmk_driving: Tensor, frame_grids: Tensor | None = None,
                state: dict[str, Tensor] | None = None) -> dict[str, Any]:
        frames = cond_driving.shape[1]
        outputs: dict[str, list[Tensor]] = {"image": [], "kp_source": [], "kp_driving": [],
                                            "local_deformation": [], "global_deformation": []}
        raw = None
        for t in range(frames):
            same_source = t > 0 and source.shape[1] == 1
            out = self.step(source[:, min(t, source.shape[1] - 1)], cond_source[:, t], cond_driving[:, t],
                            lmk_source[:, t], lmk_driving[:, t],
                            None if frame_grids is None or t == 0 else frame_grids[:, t], state,
                            raw if same_source else None)
            raw, state = out["raw"], out["state"]
            for key in ("image", "kp_source", "kp_driving"):
                outputs[key].append(out[key])
            if "local" in out["mmfa"]:
                outputs["local_deformation"].append(out["mmfa"]["local"]["deformation"])
            if "global" in out["mmfa"]:
                outputs["global_deformation"].append(out["mmfa"]["global"]["deformation"])
        result: dict[str, Any] = {k: torch.stack(v, 1) for k, v in outputs.items() if v}
        result["state"] = state
        return result


__all__ = ["PECHeadGenerator"]
