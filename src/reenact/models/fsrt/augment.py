"""FSRT's in-model augmentations (Sec. 3.1 and 3.2), batched tensors in, batched tensors out.

* :func:`color_jitter`: the colour-jittered versions ``I^A1``, ``I^A2``, ``I^A3`` of Sec. 3.2 ("Color
  Augmentation"); one random draw per sample, shared by all its frames so a source and its driving frame get
  the same colours.
* :func:`keypoint_aware_crop`: ``Omega(.)`` of Eq. 12, a random crop that keeps the whole face and is scaled
  back to the full size (the aspect ratio may change).
* :func:`zoom_crop`: the out-of-frame simulation of Sec. 3.1 ("We generate training samples with keypoints
  outside the image by estimating them before cropping"): frames are cropped (zoomed in) after the keypoints
  were detected, and the keypoints are mapped into the crop, where some fall outside ``[-1, 1]``.

Coordinates are normalised ``(x, y)`` in the :mod:`reenact.nn.keypoints` convention (``-1``/``+1`` at the
centres of the first/last pixel), so crops are sampled with ``grid_sample(align_corners=True)`` and a point
``p`` of the frame lands at ``(p - centre) * zoom`` in the crop exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R BT.601 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)


def jitter_parameters(n: int, brightness: float, contrast: float, saturation: float, hue: float,
                      device: torch.device | str | None = None, generator: torch.Generator | None = None) -> Tensor:
    """Random jitter factors ``[n, 4]``: brightness, contrast, saturation uniform in ``[1 - v, 1 + v]``, hue shift
    uniform in ``[-hue, hue]`` (fraction of the colour circle), as ``torchvision.transforms.ColorJitter``."""
    u = torch.rand(n, 4, device=device, generator=generator) * 2 - 1
    scale = torch.tensor([brightness, contrast, saturation, hue], device=u.device)
    offset = torch.tensor([1.0, 1.0, 1.0, 0.0], device=u.device)
    return offset + u * scale


def _gray(x: Tensor) -> Tensor:
    r, g, b = x.unbind(dim=-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def _rotate_hue(x: Tensor, shift: Tensor) -> Tensor:
    """``x [B, ..., 3, H, W]`` with its chroma rotated by ``shift [B, 1, ...]`` turns (broadcast per sample)."""
    # Rotation of the chroma plane of YIQ by 2*pi*shift: a hue shift that keeps luma, computed in closed form
    # for the whole batch (torchvision's HSV round trip has no batched per-image factor).
    angle = 2 * torch.pi * shift.reshape(x.shape[0], *([1] * (x.dim() - 4)))
    cos, sin = torch.cos(angle), torch.sin(angle)
    to_yiq = x.new_tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = torch.linalg.inv(to_yiq)
    yiq = torch.einsum("ij,...jhw->...ihw", to_yiq, x)
    y, i, q = yiq.unbind(dim=-3)
    c, s = cos[..., None, None], sin[..., None, None]
    rotated = torch.stack([y, c * i - s * q, s * i + c * q], dim=-3)
    return torch.einsum("ij,...jhw->...ihw", from_yiq, rotated)


def color_jitter(images: Tensor, parameters: Tensor) -> Tensor:
    """Brightness, contrast, saturation and hue jitter, in that fixed order, each result clamped to ``[0, 1]``.

    Args:
        images: ``[B, F, 3, H, W]`` in ``[0, 1]`` (``F`` frames of one sample share its parameters).
        parameters: ``[B, 4]`` from :func:`jitter_parameters`.

    Returns:
        ``[B, F, 3, H, W]``. Brightness multiplies; contrast blends with the frame's mean grey; saturation blends
        with the pixel's grey; hue rotates the YIQ chroma (close to, not bit-identical with, an HSV hue shift).
    """
    b = images.shape[0]
    view = (b,) + (1,) * (images.dim() - 1)
    brightness, contrast, saturation, hue = (parameters[:, i].reshape(view).to(images.dtype) for i in range(4))
    x = (images * brightness).clamp(0, 1)
    mean = _gray(x).mean(dim=(-3, -2, -1), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    gray = _gray(x)
    x = ((x - gray) * saturation + gray).clamp(0, 1)
    return _rotate_hue(x, hue).clamp(0, 1) if bool((parameters[:, 3] != 0).any()) else x


def _crop(images: Tensor, x0: Tensor, y0: Tensor, x1: Tensor, y1: Tensor) -> Tensor:
    """Resample the boxes ``[x0, x1] x [y0, y1]`` (normalised, per image) of ``images [N, C, H, W]`` to full size."""
    n, _, h, w = images.shape
    theta = torch.zeros(n, 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0] = (x1 - x0) / 2
    theta[:, 0, 2] = (x1 + x0) / 2
    theta[:, 1, 1] = (y1 - y0) / 2
    theta[:, 1, 2] = (y1 + y0) / 2
    grid = F.affine_grid(theta, [n, 1, h, w], align_corners=True)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=True)


def face_boxes(points: Tensor, margin: float = 0.1) -> Tensor:
    """Bounding boxes ``[N, 4]`` (``x0, y0, x1, y1``) of ``points [N, L, 2]``, grown by ``margin`` on each side
    and clipped to the frame."""
    low = points.amin(dim=-2) - margin
    high = points.amax(dim=-2) + margin
    return torch.cat([low, high], dim=-1).clamp(-1.0, 1.0)


def keypoint_aware_crop(images: Tensor, boxes: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``Omega(I)`` of Eq. 12: a random crop containing ``boxes`` (the face), scaled back to the full size.

    Each side of the crop is drawn uniformly between the frame border and the face box, independently, so the
    crop's aspect ratio (and the face's after resizing) changes, as in the paper.

    Args:
        images: ``[N, 3, H, W]``.
        boxes: ``[N, 4]`` face boxes (``x0, y0, x1, y1``, normalised, e.g. :func:`face_boxes`).

    Returns:
        ``[N, 3, H, W]``.
    """
    u = torch.rand(images.shape[0], 4, device=images.device, generator=generator).to(images.dtype)
    x0 = -1 + u[:, 0] * (boxes[:, 0] + 1)
    y0 = -1 + u[:, 1] * (boxes[:, 1] + 1)
    x1 = boxes[:, 2] + u[:, 2] * (1 - boxes[:, 2])
    y1 = boxes[:, 3] + u[:, 3] * (1 - boxes[:, 3])
    return _crop(images, x0, y0, x1, y1)


def zoom_parameters(n: int, probability: float, max_zoom: float, device: torch.device | str | None = None,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Random zoom crops for the out-of-frame simulation: ``centre [n, 2]`` and ``zoom [n]``.

    With ``probability`` a sample is zoomed by a factor uniform in ``[1, max_zoom]`` about a centre drawn so the
    crop stays inside the frame; the other samples get the identity (centre 0, zoom 1).
    """
    u = torch.rand(n, 4, device=device, generator=generator)
    active = u[:, 0] < probability
    zoom = torch.where(active, 1 + u[:, 1] * (max_zoom - 1), torch.ones_like(u[:, 1]))
    room = 1 - 1 / zoom  # the crop [c - 1/zoom, c + 1/zoom] stays inside [-1, 1]
    centre = (u[:, 2:] * 2 - 1) * room[:, None]
    return centre, zoom


def zoom_crop(images: Tensor, centre: Tensor, zoom: Tensor) -> Tensor:
    """Crop ``[c - 1/zoom, c + 1/zoom]`` of each sample's frames and resize to full size.

    Args:
        images: ``[B, F, 3, H, W]`` (all frames of a sample get the same crop).
        centre: ``[B, 2]``; zoom: ``[B]``.

    Returns:
        ``[B, F, 3, H, W]``; a point ``p`` of a frame is at :func:`zoom_points` ``(p)`` in the crop.
    """
    b, f = images.shape[:2]
    half = (1 / zoom).repeat_interleave(f)
    cx, cy = centre[:, 0].repeat_interleave(f), centre[:, 1].repeat_interleave(f)
    out = _crop(images.flatten(0, 1), cx - half, cy - half, cx + half, cy + half)
    return out.reshape(images.shape)


def zoom_points(points: Tensor, centre: Tensor, zoom: Tensor) -> Tensor:
    """Map normalised points ``[B, ..., 2]`` of the frames into :func:`zoom_crop`'s crop: ``(p - c) * zoom``."""
    view = (points.shape[0],) + (1,) * (points.dim() - 2)
    return (points - centre.reshape(*view, 2)) * zoom.reshape(*view, 1)


__all__ = ["color_jitter", "face_boxes", "jitter_parameters", "keypoint_aware_crop", "zoom_crop", "zoom_parameters",
           "zoom_points"]
