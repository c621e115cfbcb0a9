"""Least-squares similarity between point sets (Umeyama 1991), in any dimension: LPMM's expression mixing aligns
2D landmarks with it, the BFM expression basis is mapped into the face model's 3D frame with it."""

from __future__ import annotations

import torch
from torch import Tensor


def similarity_transform(moving: Tensor, fixed: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Scale ``[B]``, proper rotation ``[B, D, D]`` and translation ``[B, D]`` with
    ``fixed ~ scale * moving @ R.T + t`` for ``moving``/``fixed [B, N, D]``."""
    mu_m, mu_f = moving.mean(1, keepdim=True), fixed.mean(1, keepdim=True)
    xm, xf = moving - mu_m, fixed - mu_f
    covariance = xf.transpose(1, 2) @ xm / moving.shape[1]
    u, singular, vh = torch.linalg.svd(covariance)
    sign = torch.sign(torch.linalg.det(u @ vh))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    # A reflection is not a rotation: flip the weakest axis instead.
    correction = torch.cat([torch.ones_like(singular[:, :-1]), sign[:, None]], -1)
    rotation = u @ torch.diag_embed(correction) @ vh
    scale = (singular * correction).sum(-1) / xm.pow(2).sum((1, 2)).div(moving.shape[1]).clamp_min(1e-12)
    translation = mu_f[:, 0] - scale[:, None] * (mu_m @ rotation.transpose(1, 2))[:, 0]
    return scale, rotation, translation


__all__ = ["similarity_transform"]
