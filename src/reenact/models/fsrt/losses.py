"""FSRT's training objectives (Sec. 3.2-3.3) and the keypoint-detector supervision of the pretraining stage.

Regularisation of the expression vectors (Sec. 3.2), on ``E = [e_S1, ..., e_Sn, e_D]`` stacked over the batch
(Eq. 13, ``[(n_src + 1) * bs, c]``):

* :func:`invariance_loss`: ``1/|e| ||e_a - e_b||^2`` averaged over the batch (Eq. 11 colour invariance of the
  sources, Eq. 12 crop invariance of the driving frame);
* :func:`covariance_loss`: ``1/c sum_{i,j} Cov(E)_{ij}^2``, off-diagonal *and* diagonal (Eq. 14);
* :func:`variance_loss`: ``1/|E| sum_e max(0, 1 - sqrt(Var(e) + eps))``, the variance of each vector along the
  feature dimension (Eq. 15);
* :func:`regularisation_loss`: ``L_reg = lambda_aug / 2 (L_aug + L_aug,D) + lambda_Cov (L_Cov^E1 + L_Cov^E2) +
  lambda_Var (L_Var^E1 + L_Var^E2)`` (Eq. 16).

Statistics use the unbiased estimators (``torch.var`` / ``torch.cov`` defaults) and ``eps = 1e-4``, as the
released trainer does.

Pixel sampling for the reconstruction loss (Eq. 17, Sec. 3.3): :func:`random_pixel_indices` (phase I, 4,096
random pixels) and :func:`strided_pixel_indices` (phase II/III, a stride-2 sub-grid with a random offset, 128^2
pixels at 256 px, which get gradients; the rest is rendered without).

Keypoint supervision (:data:`IBUG68_TO_KEYPOINTS`, :func:`landmarks_to_keypoints`): FSRT uses FOMM's detector
"which is not trained further" (Sec. 3.3); with no released weights at hand, the detector is pretrained here to
predict 10 keypoints derived from the 68 iBUG landmarks of the training data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reenact.nn.keypoints import pixels_to_normalized

#: The 10 training keypoints as means of iBUG-68 landmark groups ("right"/"left" = the subject's; the data
#: pipeline renumbers landmarks on horizontal flips, so a keypoint keeps its meaning). Eyes and brows, nose tip,
#: mouth corners, lip centres and chin: they span the face (for the convex-hull scale of relative motion) and
#: cover the regions whose appearance the expression network pools (Eq. 8).
IBUG68_TO_KEYPOINTS: tuple[tuple[int, ...], ...] = (
    (36, 37, 38, 39, 40, 41),  # 0 right eye centre
    (42, 43, 44, 45, 46, 47),  # 1 left eye centre
    (17, 18, 19, 20, 21),      # 2 right eyebrow centre
    (22, 23, 24, 25, 26),      # 3 left eyebrow centre
    (30,),                     # 4 nose tip
    (48,),                     # 5 right mouth corner
    (54,),                     # 6 left mouth corner
    (51, 62),                  # 7 upper lip centre (outer and inner contour)
    (57, 66),                  # 8 lower lip centre (outer and inner contour)
    (8,),                      # 9 chin
)


def landmarks_to_keypoints(landmarks: Tensor, image_size: tuple[int, int]) -> Tensor:
    """``[..., 68, 2]`` iBUG landmarks in pixels -> ``[..., 10, 2]`` normalised keypoints (:mod:`reenact.nn.keypoints`
    convention, the one the detector's soft-argmax uses)."""
    if landmarks.shape[-2] != 68:
        raise ValueError(f"expected 68 iBUG landmarks, got {landmarks.shape[-2]}")
    normalised = pixels_to_normalized(landmarks, image_size)
    return torch.stack([normalised[..., list(group), :].mean(dim=-2) for group in IBUG68_TO_KEYPOINTS], dim=-2)


def keypoint_supervision_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Mean absolute error between predicted and target keypoints ``[..., K, 2]`` (pretraining stage)."""
    return (predicted - target).abs().mean()


def invariance_loss(a: Tensor, b: Tensor) -> Tensor:
    """Eq. 11 / 12: ``1/|e| ||a - b||_2^2`` averaged over the vectors, i.e. the mean squared difference."""
    return (a - b).pow(2).mean()


def variance_loss(vectors: Tensor, eps: float = 1e-4) -> Tensor:
    """Eq. 15: ``1/|E| sum_{e in E} max(0, 1 - sqrt(Var(e) + eps))`` for ``vectors [N, c]`` (variance along the
    feature dimension of each vector, unbiased)."""
    return F.relu(1.0 - torch.sqrt(vectors.var(dim=-1) + eps)).mean()


def covariance_loss(vectors: Tensor) -> Tensor:
    """Eq. 14: ``1/c (sum_{i != j} Cov(E)_{ij}^2 + sum_k Cov(E)_{kk}^2)`` for ``vectors [N, c]`` (N >= 2)."""
    if vectors.shape[0] < 2:
        raise ValueError("the covariance regulariser needs at least 2 expression vectors")
    cov = torch.cov(vectors.T)  # [c, c], unbiased over the N vectors
    return cov.pow(2).sum() / vectors.shape[1]


def stack_expressions(source: Tensor, driving: Tensor) -> Tensor:
    """Eq. 13: ``[B, n_src, c]`` source and ``[B, c]`` driving vectors -> ``E [(n_src + 1) * B, c]``, ordered
    ``e_S1^(1), ..., e_Sn^(1), e_D^(1), e_S1^(2), ...``."""
    return torch.cat([source, driving.unsqueeze(1)], dim=1).flatten(0, 1)


def regularisation_loss(source_a1: Tensor, source_a2: Tensor, driving: Tensor, driving_crop: Tensor,
                        invariance_weight: float = 1.0, covariance_weight: float = 1.0, variance_weight: float = 0.2,
                        statistical: bool = True) -> dict[str, Tensor]:
    """``L_reg`` of Eq. 16 and its parts.

    Args:
        source_a1, source_a2: ``[B, n_src, c]`` expression vectors of the sources under colour jitters A1 and A2.
        driving: ``[B, c]`` of the colour-jittered (A1 or A2) driving frame ``I_D^A``.
        driving_crop: ``[B, c]`` of the cropped, A3-jittered driving frame ``Omega(I_D^A3)``.
        invariance_weight, covariance_weight, variance_weight: ``lambda_aug``, ``lambda_Cov``, ``lambda_Var``
            (paper: 1, 1, 0.2).
        statistical: include the covariance and variance terms (off: invariance only, the "w/o Stat. Reg."
            ablation of Fig. 3).

    Returns:
        dict with ``invariance`` (``L_aug``), ``invariance_driving`` (``L_aug,D``), ``covariance``
        (``L_Cov^E1 + L_Cov^E2``), ``variance`` (``L_Var^E1 + L_Var^E2``) and the weighted sum ``total``.
        ``E1 = [source_a1, driving]`` and ``E2 = [source_a2, driving_crop]``, the two augmented variants of E.
    """
    out = {"invariance": invariance_loss(source_a1, source_a2),
           "invariance_driving": invariance_loss(driving, driving_crop)}
    total = 0.5 * invariance_weight * (out["invariance"] + out["invariance_driving"])
    if statistical:
        e1 = stack_expressions(source_a1, driving)
        e2 = stack_expressions(source_a2, driving_crop)
        out["covariance"] = covariance_loss(e1) + covariance_loss(e2)
        out["variance"] = variance_loss(e1) + variance_loss(e2)
        total = total + covariance_weight * out["covariance"] + variance_weight * out["variance"]
    out["total"] = total
    return out


def random_pixel_indices(batch: int, num_pixels: int, count: int, device: torch.device | str | None = None,
                         generator: torch.Generator | None = None) -> Tensor:
    """Phase I (Eq. 17): ``count`` distinct random pixel indices per sample, ``[batch, count]`` into ``H * W``."""
    count = min(count, num_pixels)
    return torch.rand(batch, num_pixels, device=device, generator=generator).argsort(dim=1)[:, :count]


def strided_pixel_indices(batch: int, height: int, width: int, stride: int, device: torch.device | str | None = None,
                          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Phase II/III (Sec. 3.3): pixels on a stride-``stride`` sub-grid with a random offset per sample (these get
    gradients) and all the others.

    Returns:
        ``grad [B, (H / s) * (W / s)]`` and ``rest [B, H * W - (H / s) * (W / s)]``: flat row-major indices into
        ``H * W``, each set sorted; together they cover every pixel exactly once.
    """
    if height % stride or width % stride:
        raise ValueError(f"the gradient sub-grid stride {stride} must divide the image size {height}x{width}")
    offset = torch.randint(0, stride, (batch, 2), device=device, generator=generator)
    rows = offset[:, :1] + stride * torch.arange(height // stride, device=device)  # [B, H/s]
    cols = offset[:, 1:] + stride * torch.arange(width // stride, device=device)  # [B, W/s]
    grad = (rows[:, :, None] * width + cols[:, None, :]).flatten(1)
    keep = torch.ones(batch, height * width, dtype=torch.bool, device=device)
    keep.scatter_(1, grad, False)
    rest = keep.nonzero()[:, 1].reshape(batch, -1)
    return grad, rest


__all__ = ["IBUG68_TO_KEYPOINTS", "covariance_loss", "invariance_loss", "keypoint_supervision_loss",
           "landmarks_to_keypoints", "random_pixel_indices", "regularisation_loss", "stack_expressions",
           "strided_pixel_indices", "variance_loss"]
