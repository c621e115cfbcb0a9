"""Backward warping with sampling grids, pixel-flow conversion and occlusion blending.

Grids and deformations are ``[B, H, W, 2]`` in the normalised ``(x, y)`` convention of
:mod:`reenact.nn.keypoints` (``-1``/``+1`` = centres of the first/last pixel, ``grid_sample`` with
``align_corners=True``). Warping is *backward*: ``out[b, :, i, j] = features[b, :, at grid[b, i, j]]``.
This is how FOMM (Siarohin et al. 2019, ``OcclusionAwareGenerator.deform_input``) and its descendants
apply a dense motion field.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from reenact.nn.keypoints import make_coordinate_grid


def resize_grid(grid: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample a ``[B, h, w, 2]`` grid to ``[B, H, W, 2]``.

    The values are absolute normalised coordinates, so only the sampling positions change; bilinear
    interpolation with ``align_corners=True`` keeps the identity grid exactly the identity at any size.
    """
    if tuple(grid.shape[1:3]) == tuple(size):
        return grid
    resized = F.interpolate(grid.permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=True)
    return resized.permute(0, 2, 3, 1)


def warp(
    features: Tensor,
    grid: Tensor,
    mode: Literal["bilinear", "nearest", "bicubic"] = "bilinear",
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros",
) -> Tensor:
    """Backward-warp ``features [B, C, H, W]`` with ``grid [B, h, w, 2]`` -> ``[B, C, H, W]``.

    The grid is first resized to the feature size (FOMM computes motion at a lower resolution than the
    features it warps). Use :func:`warp_to_grid_size` to sample at the grid's own resolution instead.
    """
    grid = resize_grid(grid, (features.shape[2], features.shape[3])).to(features.dtype)
    return F.grid_sample(features, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def warp_to_grid_size(
    features: Tensor,
    grid: Tensor,
    mode: Literal["bilinear", "nearest", "bicubic"] = "bilinear",
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros",
) -> Tensor:
    """Plain ``grid_sample``: ``features [B, C, H, W]``, ``grid [B, h, w, 2]`` -> ``[B, C, h, w]``."""
    return F.grid_sample(
        features, grid.to(features.dtype), mode=mode, padding_mode=padding_mode, align_corners=True
    )


def identity_grid(
    batch: int, h: int, w: int, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """The identity sampling grid ``[batch, h, w, 2]``."""
    return make_coordinate_grid(h, w, dtype=dtype, device=device).unsqueeze(0).expand(batch, h, w, 2)


def flow_to_grid(flow: Tensor) -> Tensor:
    """Pixel displacement field ``[B, 2, H, W]`` (channel 0 = dx, 1 = dy; torchvision RAFT layout) -> sampling
    grid ``[B, H, W, 2]`` such that ``warp(img, grid)[p] = img[p + flow[p]]``."""
    b, _, h, w = flow.shape
    scale = flow.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return identity_grid(b, h, w, flow.dtype, flow.device) + flow.permute(0, 2, 3, 1) * scale


def grid_to_flow(grid: Tensor) -> Tensor:
    """Inverse of :func:`flow_to_grid`: grid ``[B, H, W, 2]`` -> pixel displacement ``[B, 2, H, W]``."""
    b, h, w, _ = grid.shape
    scale = grid.new_tensor([(w - 1) / 2.0, (h - 1) / 2.0])
    return ((grid - identity_grid(b, h, w, grid.dtype, grid.device)) * scale).permute(0, 3, 1, 2)


def occlusion_blend(warped: Tensor, reference: Tensor | None, occlusion: Tensor) -> Tensor:
    """``warped * o + (1 - o) * reference`` with ``o`` resized to the feature size.

    Args:
        warped: ``[B, C, H, W]`` warped source features.
        reference: ``[B, C, H, W]`` what occluded regions fall back to, or ``None`` for zeros (FOMM, where the
            decoder inpaints occluded regions from the masked features).
        occlusion: ``[B, 1, h, w]`` in ``[0, 1]``; 1 = visible in the source.
    """
    if occlusion.shape[2:] != warped.shape[2:]:
        occlusion = F.interpolate(occlusion, size=warped.shape[2:], mode="bilinear", align_corners=True)
    if reference is None:
        return warped * occlusion
    return warped * occlusion + (1.0 - occlusion) * reference


__all__ = [
    "flow_to_grid",
    "grid_to_flow",
    "identity_grid",
    "occlusion_blend",
    "resize_grid",
    "warp",
    "warp_to_grid_size",
]
