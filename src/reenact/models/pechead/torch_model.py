"""PECHead generator ``G`` (Gao et al. 2023, Sec. 3, Fig. 2a; supplement Fig. 1): pure torch.

Per frame ``t`` (source frame ``x^s_t``, the face-model coefficients of source and driving, landmarks ``l^s, l^d``):

1. ``k^s = E(x^s, p^s, e^s)``, ``k^d = E(x^s, p^d, e^d)`` (Eq. 2, :class:`PoseAwareKeypointEstimator`);
2. encoder (a 7x7 stem and two down blocks) -> raw feature ``f^r`` at 1/4 resolution;
3. MMFA (Sec. 3.2, Eq. 3) -> aligned feature ``f^a``;
4. CAP (Sec. 3.3, Eq. 4) -> adapted feature ``f^c`` (skipped in the ``use_cap = False`` ablation: ``f^c = f^a``);
5. decoder (residual bottleneck blocks, two up blocks, 7x7 conv, sigmoid) -> ``x^_d``.

Only CAP is recurrent, so :meth:`PECHeadGenerator.forward` runs steps 1-3 and 5 once on all ``B·T`` frames of a
clip and loops over ``t`` for CAP alone (same values as the per-frame :meth:`PECHeadGenerator.step`, except that
BatchNorm's training-mode statistics are taken over ``B·T`` frames instead of ``B``).

``output_skip = "warped_source"`` (a training choice for small budgets, off in the paper preset) adds the source
image warped by the local (landmark) deformation ``W(x^s, w_local)`` -- the image ``L_w`` (supplement Eq. 5)
already asks to match the driving frame -- to the decoder's output: ``x^_d = clamp(W(x^s, w_local) + tanh(C(h)),
0, 1)`` with the final 7x7 conv ``C`` zero-initialised, so the untrained generator outputs the warped source and
the decoder learns a residual. The decoder, MMFA and CAP are unchanged.

The Face Shape Reconstructor ``R`` is a separate module (trained and frozen on its own, supplement 2.3); the
Lightning wrapper :mod:`reenact.models.pechead.lightning_model` turns its coefficients into the inputs used here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from reenact.models.pechead.cap import CAP
from reenact.models.pechead.keypoints import PoseAwareKeypointEstimator
from reenact.models.pechead.mmfa import MMFA, MotionMode
from reenact.nn.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from reenact.nn.config import ArchitectureConfig
from reenact.nn.warping import warp

OutputSkip = Literal["none", "warped_source"]


@dataclass(frozen=True)
class PECHeadConfig(ArchitectureConfig):
    """Sizes of :class:`PECHeadGenerator` (described there), declared once: the Lightning module takes it as
    ``generator`` (``model.generator.*``). The ablation switches (``motion_mode``, ``deformable``, ``use_cap``)
    are not fields: the module's ``variant`` (Table 4) sets them. Defaults: the supplement's sizes (Table 1)."""

    num_keypoints: int = 10
    num_landmarks: int = 68
    block_expansion: int = 64
    max_features: int = 512
    num_bottleneck_blocks: int = 6
    kp_block_expansion: int = 32
    kp_max_features: int = 1024
    kp_num_blocks: int = 4
    kp_scale_factor: float = 0.25
    motion_block_expansion: int = 64
    motion_max_features: int = 1024
    motion_num_blocks: int = 5
    motion_head_kernel: int = 7
    dcn_hidden: int = 64
    dcn_groups: int = 8
    cap_adaptation_blocks: int = 2
    cap_refinement_blocks: int = 2
    kp_variance: float = 0.01
    output_skip: OutputSkip = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output_skip not in ("none", "warped_source"):
            raise ValueError(f"output_skip must be 'none' or 'warped_source', got {self.output_skip!r}")


class PECHeadGenerator(nn.Module):
    """``G`` with ``E`` inside (``E`` is trained with the generator's losses).

    Args:
        cond_dim: size of the ``(p, e)`` conditioning vector.
        config: the sizes (:class:`PECHeadConfig`), with keyword ``overrides`` of its fields on top; they are:
        num_keypoints: ``K`` learned keypoints (10); ``num_landmarks``: predefined landmarks (68).
        block_expansion, max_features: encoder/decoder widths (stem ``e``, then ``2e``, ``4e``, capped).
        num_bottleneck_blocks: residual blocks between CAP and the up blocks.
        kp_block_expansion, kp_max_features, kp_num_blocks, kp_scale_factor: sizes of ``E``.
        motion_block_expansion, motion_max_features, motion_num_blocks: sizes of each motion estimator ``Φ``;
            motion_head_kernel: the kernel of its mask and occlusion convolutions (FOMM's 7).
        dcn_hidden, dcn_groups: deformable alignment sizes.
        cap_adaptation_blocks, cap_refinement_blocks: sizes of CAP.
        output_skip: ``"none"`` (paper: ``x^_d = σ(C(h))``) or ``"warped_source"`` (``x^_d = clamp(W(x^s,
            w_local) + tanh(C(h)), 0, 1)``, ``C`` zero-initialised; see the module docstring).
        motion_mode: MMFA or a Table 4 ablation (see :class:`MMFA`); ``deformable``: Eq. 3 on/off;
        use_cap: CAP on/off (``"mmfa"`` vs ``"full"`` in Table 4).

    Forward (:meth:`forward`): sequences ``source [B, T, 3, H, W]``, ``cond_source``/``cond_driving [B, T, D]``,
    ``lmk_source``/``lmk_driving [B, T, 68, 2]`` (``reenact.nn`` normalised), ``frame_grids [B, T, H, W, 2]`` or
    ``None`` (frame flow between consecutive source frames; entry 0 unused) -> dict ``image [B, T, 3, H, W]``,
    ``kp_source``/``kp_driving [B, T, K, 2]``, ``local_deformation``/``global_deformation [B, T, h, w, 2]``
    (whichever the mode has) and ``state`` (CAP state after the last frame, or ``None``).
    """

    def __init__(self, cond_dim: int, config: PECHeadConfig | Mapping[str, Any] | None = None, *,
                 motion_mode: MotionMode = "mmfa", deformable: bool = True, use_cap: bool = True,
                 **overrides: Any) -> None:
        super().__init__()
        c = self.config = PECHeadConfig.resolve(config, **overrides)
        self.output_skip = c.output_skip
        self.keypoint_estimator = PoseAwareKeypointEstimator(c.num_keypoints, cond_dim, c.kp_block_expansion,
                                                             c.kp_max_features, c.kp_num_blocks, c.kp_scale_factor)
        widths = [min(c.max_features, c.block_expansion * 2**i) for i in range(3)]
        channels = widths[2]
        self.first = SameBlock2d(3, widths[0], kernel_size=7, padding=3)
        self.encoder = nn.Sequential(DownBlock2d(widths[0], widths[1]), DownBlock2d(widths[1], widths[2]))
        self.mmfa = MMFA(channels, min(c.max_features, 2 * channels), feature_scale=0.25,
                         num_keypoints=c.num_keypoints, num_landmarks=c.num_landmarks, mode=motion_mode,
                         deformable=deformable, motion_block_expansion=c.motion_block_expansion,
                         motion_num_blocks=c.motion_num_blocks, motion_max_features=c.motion_max_features,
                         dcn_hidden=c.dcn_hidden, dcn_groups=c.dcn_groups, kp_variance=c.kp_variance,
                         motion_head_kernel=c.motion_head_kernel)
        self.cap = CAP(channels, c.cap_adaptation_blocks, c.cap_refinement_blocks) if use_cap else None
        self.bottleneck = nn.Sequential(*[ResBlock2d(channels) for _ in range(c.num_bottleneck_blocks)])
        self.decoder = nn.Sequential(UpBlock2d(widths[2], widths[1]), UpBlock2d(widths[1], widths[0]))
        self.final = nn.Conv2d(widths[0], 3, kernel_size=7, padding=3)
        if c.output_skip == "warped_source":
            nn.init.zeros_(self.final.weight)
            nn.init.zeros_(self.final.bias)

    def encode(self, image: Tensor) -> Tensor:
        """Raw feature ``f^r [B, C, H/4, W/4]`` of ``image [B, 3, H, W]``."""
        return self.encoder(self.first(image))

    def keypoints(self, source: Tensor, cond: Tensor) -> Tensor:
        """``E(x^s, p, e)`` (Eq. 2): ``[B, 3, H, W]``, ``[B, D]`` -> ``[B, K, 2]``."""
        return self.keypoint_estimator(source, cond)

    def decode(self, feature: Tensor, source: Tensor | None = None, local_deformation: Tensor | None = None
               ) -> Tensor:
        """``f^c [B, C, h, w]`` -> image ``[B, 3, 4h, 4w]`` in ``[0, 1]``. With ``output_skip =
        "warped_source"``, ``source [B, 3, 4h, 4w]`` and ``local_deformation [B, h', w', 2]`` give the skip."""
        logits = self.final(self.decoder(self.bottleneck(feature)))
        if self.output_skip == "none":
            return torch.sigmoid(logits)
        if source is None or local_deformation is None:
            raise ValueError("output_skip='warped_source' needs the source image and the local deformation")
        return (warp(source, local_deformation) + torch.tanh(logits)).clamp(0, 1)

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
        image = self.decode(feature, source, mmfa["local_deformation"])
        return {"image": image, "kp_source": kp_source, "kp_driving": kp_driving, "mmfa": mmfa,
                "state": new_state, "raw": raw}

    def forward(self, source: Tensor, cond_source: Tensor, cond_driving: Tensor, lmk_source: Tensor,
                lmk_driving: Tensor, frame_grids: Tensor | None = None,
                state: dict[str, Tensor] | None = None) -> dict[str, Any]:
        """A clip: ``E``, the encoder, MMFA and the decoder run once over all ``B·T`` frames (none of them is
        recurrent); CAP (Eq. 4) runs frame by frame. Equal to calling :meth:`step` for ``t = 0 .. T-1`` (up to
        BatchNorm's training-mode batch statistics)."""
        b, frames = cond_driving.shape[:2]
        single = source.shape[1] == 1
        flat = (lambda x: x.flatten(0, 1))  # noqa: E731
        src_frames = flat(source.expand(b, frames, *source.shape[2:]))
        n = b * frames
        kps = self.keypoints(torch.cat([src_frames, src_frames]), torch.cat([flat(cond_source), flat(cond_driving)]))
        kp_source, kp_driving = kps[:n], kps[n:]
        raw = self.encode(source[:, 0]) if single else self.encode(src_frames)
        raw_frames = raw.unsqueeze(1).expand(b, frames, *raw.shape[1:]).flatten(0, 1) if single else raw
        mmfa = self.mmfa(src_frames, raw_frames, kp_source, kp_driving, flat(lmk_source), flat(lmk_driving))
        feature = mmfa["aligned"]
        if self.cap is not None:
            unflat = (lambda x: x.view(b, frames, *x.shape[1:]))  # noqa: E731
            aligned, raws, local = unflat(feature), unflat(raw_frames), unflat(mmfa["local_deformation"])
            adapted = []
            for t in range(frames):
                grid = None if frame_grids is None or t == 0 or state is None else frame_grids[:, t]
                out, state = self.cap(aligned[:, t], raws[:, t], local[:, t], grid, state)
                adapted.append(out)
            feature = torch.stack(adapted, 1).flatten(0, 1)
        image = self.decode(feature, src_frames, mmfa["local_deformation"])
        result: dict[str, Any] = {"image": image, "kp_source": kp_source, "kp_driving": kp_driving}
        if "local" in mmfa:
            result["local_deformation"] = mmfa["local"]["deformation"]  # type: ignore[index]
        if "global" in mmfa:
            result["global_deformation"] = mmfa["global"]["deformation"]  # type: ignore[index]
        result = {k: v.view(b, frames, *v.shape[1:]) for k, v in result.items()}
        result["state"] = state
        return result


__all__ = ["PECHeadConfig", "PECHeadGenerator"]
