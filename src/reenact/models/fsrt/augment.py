"""FSRT's in-model augmentations (Sec. 3.1 and 3.2), batched tensors in, batched tensors out.

* :func:`color_jitter`: the colour-jittered versions ``I^A1``, ``I^A2``, ``I^A3`` of Sec. 3.2 ("Color
  Augmentation"); one random draw per sample, shared by all its frames so a source and its driving frame get
  the same colours.
* :func:`face_boxes` + :func:`crop_boxes`: ``Omega(.)`` of Eq. 12, the face's box with the official release's
  margins (+25 % above, +5 % below), cropped from the un-zoomed driving frame and scaled back to the full size
  (the aspect ratio changes).
* :func:`out_of_frame_boxes` + :func:`crop_frames` + :func:`crop_points`: the out-of-frame simulation of
  Sec. 3.1 ("We generate training samples with keypoints outside the image by estimating them before
  cropping"): after the keypoints were detected, the frames are cropped around the source keypoints' box, each
  side moved out by a random amount (the release's margins), and the keypoints are mapped into the crop, where
  some fall outside ``[-1, 1]``.

Coordinates are normalised ``(x, y)`` in the :mod:`reenact.nn.keypoints` convention (``-1``/``+1`` at the
centres of the first/last pixel), so crops are sampled with ``grid_sample(align_corners=True)`` and a point
``p`` of the frame lands at ``(p - centre) / half`` (per axis) in the crop exactly.
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


def _bounds(points: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Bounding box ``x0, y0, x1, y1`` (each ``[N]``) of ``points [N, L, 2]``."""
    low, high = points.amin(dim=-2), points.amax(dim=-2)
    return low[:, 0], low[:, 1], high[:, 0], high[:, 1]


def _clipped(x0: Tensor, y0: Tensor, x1: Tensor, y1: Tensor, min_half: float = 0.05) -> Tensor:
    """``[N, 4]`` boxes clipped to the frame, each side at least ``2 * min_half`` long (degenerate point sets)."""
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    hx, hy = ((x1 - x0) / 2).clamp(min=min_half), ((y1 - y0) / 2).clamp(min=min_half)
    return torch.stack([cx - hx, cy - hy, cx + hx, cy + hy], dim=-1).clamp(-1.0, 1.0)


def face_boxes(points: Tensor, side: float = 0.0, top: float = 0.25, bottom: float = 0.05) -> Tensor:
    """The boxes ``[N, 4]`` (``x0, y0, x1, y1``, normalised, clipped to the frame) of ``Omega`` (Eq. 12): the
    bounding box of ``points [N, L, 2]`` (the face's keypoints or landmarks) grown by ``side`` of its width on
    the left and right, ``top`` of its height above and ``bottom`` below. The defaults are the official release's
    (no side margin, +25 % above, +5 % below; ``../shared/reference``)."""
    x0, y0, x1, y1 = _bounds(points)
    width, height = x1 - x0, y1 - y0
    return _clipped(x0 - side * width, y0 - top * height, x1 + side * width, y1 + bottom * height)


def crop_boxes(images: Tensor, boxes: Tensor) -> Tensor:
    """Crop ``boxes [N, 4]`` of ``images [N, 3, H, W]`` and scale each back to the full size (the aspect ratio
    changes with the box's): ``Omega(I)`` of Eq. 12 with :func:`face_boxes`."""
    return _crop(images, boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])


def out_of_frame_boxes(points: Tensor, probability: float, side: float = 0.2, top: float = 0.5,
                       bottom: float = 0.15, generator: torch.Generator | None = None) -> Tensor:
    """Random crops ``[B, 4]`` for the out-of-frame simulation (Sec. 3.1), built as the official release does
    (``../shared/reference``): around the bounding box of ``points [B, L, 2]`` (the source keypoints), each side
    moved out independently by a uniform fraction of up to ``side`` of the box width (left, right), ``top`` of its
    height (above) and ``bottom`` (below), clipped to the frame. With probability ``1 - probability`` a sample
    keeps the whole frame (``[-1, -1, 1, 1]``). The crop is tight around the face, so the driving frame's
    keypoints, mapped into it by :func:`crop_points`, may leave ``[-1, 1]`` (the release: to about ``±2``)."""
    x0, y0, x1, y1 = _bounds(points)
    width, height = x1 - x0, y1 - y0
    u = torch.rand(points.shape[0], 5, device=points.device, generator=generator).to(points.dtype)
    boxes = _clipped(x0 - u[:, 0] * side * width, y0 - u[:, 2] * top * height,
                     x1 + u[:, 1] * side * width, y1 + u[:, 3] * bottom * height)
    full = boxes.new_tensor([-1.0, -1.0, 1.0, 1.0]).expand_as(boxes)
    return torch.where((u[:, 4] < probability)[:, None], boxes, full)


def crop_frames(images: Tensor, boxes: Tensor) -> Tensor:
    """Crop each sample's box of all its frames and resize to full size.

    Args:
        images: ``[B, F, 3, H, W]`` (all frames of a sample get the same crop).
        boxes: ``[B, 4]`` (``x0, y0, x1, y1``, normalised; e.g. :func:`out_of_frame_boxes`).

    Returns:
        ``[B, F, 3, H, W]``; a point ``p`` of a frame is at :func:`crop_points` ``(p)`` in the crop.
    """
    f = images.shape[1]
    per_frame = boxes.repeat_interleave(f, dim=0)
    return crop_boxes(images.flatten(0, 1), per_frame).reshape(images.shape)


def crop_points(points: Tensor, boxes: Tensor) -> Tensor:
    """Map normalised points ``[B, ..., 2]`` of the frames into :func:`crop_frames`'s crop of ``boxes [B, 4]``:
    ``(p - c) / half`` per axis, ``c`` the box centre and ``half`` its half sizes."""
    view = (points.shape[0],) + (1,) * (points.dim() - 2) + (2,)
    centre = ((boxes[:, :2] + boxes[:, 2:]) / 2).reshape(view)
    half = ((boxes[:, 2:] - boxes[:, :2]) / 2).reshape(view)
    return (points - centre) / half


__all__ = ["color_jitter", "crop_boxes", "crop_frames", "crop_points", "face_boxes", "jitter_parameters",
           "out_of_frame_boxes"]
