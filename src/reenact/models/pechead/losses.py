"""PECHead's objective (Sec. 3.4, Eq. 5; supplement Sec. 1, Eq. 1-6; weights supplement 2.3).

``L_G = λ_p L_p + λ_v L_v + λ_k L_k + λ_e L_e + λ_w L_w + λ_G L_G`` with λ = 10, 10, 1, 10, 5, 1, every term
accumulated over the T frames and divided by T (supplement Sec. 1); ``L_D`` is the hinge loss of the two-scale
spectral-norm patch discriminator. The shared blocks supply the pieces: :class:`reenact.nn.losses.VGG19Perceptual`
(FOMM pyramid, L_v), :func:`reenact.nn.losses.equivariance_loss` with :class:`reenact.nn.tps.RandomTPS` (L_e),
:func:`reenact.nn.losses.hinge_g_loss`/:func:`hinge_d_loss` (L_G/L_D).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reenact.nn.losses import detached_call
from reenact.nn.warping import warp


def keypoint_distance_loss(keypoints: Tensor, eta: float = 0.1) -> Tensor:
    """Supplement Eq. 3: ``sum_i sum_j max(0, η − ||k_i − k_j||²)`` averaged over the leading dims.

    ``keypoints [..., K, 2]`` -> scalar. The diagonal (``i = j``) contributes the constant ``K·η`` in the
    paper's sum; it carries no gradient and is left out so the loss can reach 0.
    """
    dist = (keypoints.unsqueeze(-2) - keypoints.unsqueeze(-3)).pow(2).sum(-1)  # [..., K, K]
    k = keypoints.shape[-2]
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=keypoints.device)
    return (torch.relu(eta - dist) * off_diagonal).sum(dim=(-2, -1)).mean()


def warping_loss(source: Tensor, driving: Tensor, local_deformation: Tensor | None,
                 global_deformation: Tensor | None) -> Tensor:
    """Supplement Eq. 5: ``0.5 |W(x^s, w_local) − x^d|_1 + 0.5 |W(x^s, w_global) − x^d|_1``.

    ``source``/``driving [N, 3, H, W]``; deformations ``[N, h, w, 2]`` (resized to the image by :func:`warp`).
    An ablation with only one estimator puts its whole weight on that one.
    """
    terms = [(warp(source, d) - driving).abs().mean() for d in (local_deformation, global_deformation)
             if d is not None]
    return torch.stack(terms).mean()


def ms_ssim_loss(generated: Tensor, target: Tensor, kernel_size: int = 11) -> Tensor:
    """Mean MS-SSIM (Wang et al. 2003) of ``generated``/``target [N, 3, H, W]`` in ``[0, 1]``, differentiable.

    An *offline stand-in* for the VGG19 perceptual term ``L_v`` (supplement Eq. 2) when its ImageNet weights are
    missing; used as ``1 − MS-SSIM`` (``PECHead(structural_weight=...)``). Scales as in the ``ms_ssim`` metric:
    as many as the frame size allows (3 at 64 px), the weights renormalised.
    """
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    from reenact.metrics.pixel import MS_SSIM_BETAS, ms_ssim_scales

    scales = ms_ssim_scales(generated.shape[-2], generated.shape[-1], kernel_size)
    betas = torch.tensor(MS_SSIM_BETAS[:scales], dtype=torch.float64)
    value = multiscale_structural_similarity_index_measure(
        generated, target, kernel_size=kernel_size, betas=tuple((betas / betas.sum()).tolist()), data_range=1.0,
        normalize="relu")
    return value  # type: ignore[return-value]


def frozen_logits(discriminator: nn.Module, images: Tensor) -> list[Tensor]:
    """Per-scale logits of the multi-scale ``discriminator(images)`` with its parameters detached
    (:func:`reenact.nn.losses.detached_call`): the generator's adversarial term reaches the images only."""
    return [logits for _, logits in detached_call(discriminator, images).values()]


__all__ = ["frozen_logits", "keypoint_distance_loss", "ms_ssim_loss", "warping_loss"]
