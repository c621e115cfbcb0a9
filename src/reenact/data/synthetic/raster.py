"""Drawing primitives of the synthetic renderer: rotations, curves, anti-aliased OpenCV fills and lines,
soft blending."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

# --------------------------------------------------------------------------------------------------
# Geometry helpers


def _rotation_np(pose: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees ``[3]`` -> ``[3, 3]``, same convention as the torch model."""
    yaw, pitch, roll = np.radians(pose)
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    return np.array([
        [cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp],
        [sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp],
        [-sy, cy * sp, cy * cp],
    ])


def _curve(points: np.ndarray, closed: bool = False, samples: int = 5) -> np.ndarray:
    """Catmull-Rom spline through ``[N, 2]`` points -> a denser ``[M, 2]`` polyline."""
    points = np.asarray(points, dtype=np.float64)
    if closed:
        padded = np.concatenate([points[-1:], points, points[:2]])
        segments = len(points)
    else:
        padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
        segments = len(points) - 1
    s = np.linspace(0.0, 1.0, samples, endpoint=False)[None, :, None]
    p0, p1, p2, p3 = (padded[i : i + segments][:, None, :] for i in range(4))
    curve = 0.5 * (
        2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (3 * p1 - p0 - 3 * p2 + p3) * s**3
    )
    curve = curve.reshape(-1, 2)
    return curve if closed else np.concatenate([curve, points[-1:]])


_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex precision for smooth anti-aliased edges


def _fix(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << _SHIFT)).astype(np.int32)


def _fill(image: np.ndarray, points: np.ndarray, colour: Any) -> None:
    cv2.fillPoly(image, [_fix(points)], _colour(colour), cv2.LINE_AA, _SHIFT)


def _line(image: np.ndarray, points: np.ndarray, colour: Any, thickness: float, closed: bool = False) -> None:
    cv2.polylines(image, [_fix(points)], closed, _colour(colour), max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _bounds(points: np.ndarray, shape: tuple[int, int], margin: int = 2) -> tuple[int, int, int, int]:
    """Integer pixel box ``(x0, y0, x1, y1)`` around ``points [N, 2]``, clipped to an image of ``shape``."""
    x0, y0 = np.floor(points.min(0)).astype(int) - margin
    x1, y1 = np.ceil(points.max(0)).astype(int) + margin + 1
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _blend(image: np.ndarray, mask: np.ndarray, colour: np.ndarray | Sequence[float]) -> None:
    """``image = image * (1 - a) + colour * a`` in place with ``a = mask / 255``, inside the mask's bounding box.

    ``image`` is ``[H, W, 3]`` float32, ``mask`` ``[H, W]`` uint8, ``colour`` an RGB triple or ``[H, W, 3]``.
    """
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    alpha = mask[y : y + h, x : x + w].astype(np.float32)[..., None] * (1.0 / 255.0)
    target = image[y : y + h, x : x + w]
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 3 and colour.shape[:2] == image.shape[:2]:
        colour = colour[y : y + h, x : x + w]
    target += (colour - target) * alpha


def _colour(colour: Any) -> tuple:
    if np.isscalar(colour):
        return (float(colour),)
    return tuple(float(c) for c in np.clip(colour, 0, 255))


def _ellipse_points(centre: np.ndarray, axis_a: np.ndarray, axis_b: np.ndarray, count: int = 24) -> np.ndarray:
    """Points ``[count, D]`` on the ellipse ``centre + cos * axis_a + sin * axis_b`` (any dimension D)."""
    angle = np.linspace(0, 2 * math.pi, count, endpoint=False)[:, None]
    return centre + np.cos(angle) * axis_a + np.sin(angle) * axis_b


