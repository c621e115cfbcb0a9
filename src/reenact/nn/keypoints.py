"""Keypoint coordinates, Gaussian heatmaps, soft-argmax, FOMM's keypoint detector and relative motion.

Coordinate convention (used by every module in ``reenact.nn`` and by the models):

    A point is ``(x, y)`` in normalised image coordinates: ``x`` runs along the width (columns), ``y``
    along the height (rows). ``-1`` is the *centre* of the first pixel and ``+1`` the centre of the last
    pixel, i.e. pixel index ``i`` of an axis of length ``n`` sits at ``2 * i / (n - 1) - 1``. This is the
    convention of ``torch.nn.functional.grid_sample(..., align_corners=True)``, so a grid built from
    :func:`make_coordinate_grid` samples pixel centres exactly and the identity grid reproduces the image.
    Keypoint tensors are ``[..., K, 2]`` in that convention; sampling grids and deformations are
    ``[B, H, W, 2]`` in it.

Heatmap helpers follow FOMM (Siarohin et al. 2019): ``kp2gaussian`` (:func:`keypoints_to_heatmaps`),
``gaussian2kp`` (:func:`heatmap_to_keypoints`), ``KPDetector`` (:class:`KeypointDetector`) and
``normalize_kp`` (:func:`relative_keypoints`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.nn.blocks import AntiAliasInterpolation2d
from reenact.nn.hourglass import Hourglass


def _axis(n: int, dtype: torch.dtype, device: torch.device | str | None) -> Tensor:
    if n == 1:
        # A single pixel is the centre of the image; avoids the 0/0 of the general formula.
        return torch.zeros(1, dtype=dtype, device=device)
    return torch.arange(n, dtype=dtype, device=device) * (2.0 / (n - 1)) - 1.0


def make_coordinate_grid(
    h: int,
    w: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """Normalised pixel-centre coordinates ``[h, w, 2]`` with ``grid[i, j] = (x_j, y_i)`` in ``[-1, 1]``.

    ``grid[..., 0]`` varies along the width, ``grid[..., 1]`` along the height; see the module docstring.
    ``grid.unsqueeze(0)`` is the identity sampling grid for ``grid_sample(align_corners=True)``.
    """
    x = _axis(w, dtype, device)
    y = _axis(h, dtype, device)
    yy, xx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def pixels_to_normalized(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Pixel coordinates ``[..., 2]`` (x = column, y = row, 0-based pixel centres) of an ``(h, w)`` image
    -> normalised ``[-1, 1]`` coordinates."""
    h, w = size
    scale = points.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    return points * scale - 1.0


def normalized_to_pixels(points: Tensor, size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`pixels_to_normalized`: ``[-1, 1]`` -> pixel coordinates of an ``(h, w)`` image."""
    h, w = size
    scale = points.new_tensor([(w - 1) / 2.0, (h - 1) / 2.0])
    return (points + 1.0) * scale


def keypoints_to_heatmaps(keypoints: Tensor, spatial_size: Sequence[int], variance: float) -> Tensor:
    """Unnormalised isotropic Gaussians at the keypoints (FOMM ``kp2gaussian``).

    ``heat[..., k, i, j] = exp(-0.5 * ||grid[i, j] - kp_k||^2 / variance)``, peak value 1 at the keypoint;
    ``variance`` is in squared normalised units (FOMM uses 0.01).

    Args:
        keypoints: ``[..., K, 2]`` in ``[-1, 1]`` (x, y).
        spatial_size: ``(h, w)`` of the output maps.
        variance: Gaussian variance.

    Returns:
        ``[..., K, h, w]``.
    """
    h, w = int(spatial_size[0]), int(spatial_size[1])
    grid = make_coordinate_grid(h, w, dtype=keypoints.dtype, device=keypoints.device)
    diff = grid - keypoints[..., None, None, :]  # [..., K, h, w, 2]
    return torch.exp(-0.5 * diff.pow(2).sum(-1) / variance)


def softmax_heatmaps(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Spatial softmax of ``[B, K, h, w]`` logits / ``temperature`` -> ``[B, K, h, w]``, maps sum to 1."""
    b, k, h, w = logits.shape
    return F.softmax(logits.reshape(b, k, h * w) / temperature, dim=-1).reshape(b, k, h, w)


def heatmap_to_keypoints(heatmaps: Tensor, eps: float = 1e-12) -> Tensor:
    """Soft-argmax: expected coordinate under each heatmap (FOMM ``gaussian2kp``).

    The maps must be non-negative (softmax outputs, Gaussians); they are normalised to sum to 1 over space
    first, which leaves softmax outputs unchanged and lets unnormalised Gaussians round-trip through
    :func:`keypoints_to_heatmaps`.

    Args:
        heatmaps: ``[..., K, h, w]``.

    Returns:
        ``[..., K, 2]`` in ``[-1, 1]`` (x, y).
    """
    h, w = heatmaps.shape[-2:]
    grid = make_coordinate_grid(h, w, dtype=heatmaps.dtype, device=heatmaps.device)
    weights = heatmaps / heatmaps.sum(dim=(-2, -1), keepdim=True).clamp_min(eps)
    return (weights[..., None] * grid).sum(dim=(-3, -2))


class KeypointDetector(nn.Module):
    """FOMM unsupervised keypoint detector (``KPDetector``): anti-aliased downsampling -> hourglass -> 7x7
    conv to ``K`` heatmap logits -> spatial softmax with temperature -> soft-argmax.

    With ``num_keypoints=10, num_channels=3, block_expansion=32, max_features=1024, num_blocks=5,
    temperature=0.1, scale_factor=0.25`` its state_dict equals the official FSRT ``kp_detector``
    (``predictor.*``, ``kp.*``, ``down.weight``; 14.15 M parameters).

    Args:
        num_keypoints: ``K``.
        num_channels: image channels.
        block_expansion, max_features, num_blocks: hourglass width/depth (see :mod:`reenact.nn.hourglass`).
        temperature: softmax temperature of the heatmaps (FOMM: 0.1).
        scale_factor: the image is anti-alias downsampled by this factor before the hourglass.
        estimate_jacobian: also predict a 2x2 local affine per keypoint (FOMM's first-order terms), as the
            heatmap-weighted average of a ``4 * K`` channel map initialised to the identity.
        pad: padding of the 7x7 heatmap conv (FOMM: 0, so heatmaps are 6 px smaller than the features).

    Forward: ``image [B, C, H, W]`` in ``[0, 1]`` -> dict with
        ``keypoints [B, K, 2]`` in ``[-1, 1]`` (x, y),
        ``heatmaps [B, K, h, w]`` (softmax, sums to 1; ``h = H * scale_factor - 6 + 2 * pad``),
        ``features [B, block_expansion + C, H * scale_factor, W * scale_factor]`` (hourglass output),
        and ``jacobians [B, K, 2, 2]`` when ``estimate_jacobian``.
    """

    def __init__(
        self,
        num_keypoints: int = 10,
        num_channels: int = 3,
        block_expansion: int = 32,
        max_features: int = 1024,
        num_blocks: int = 5,
        temperature: float = 0.1,
        scale_factor: float = 0.25,
        estimate_jacobian: bool = False,
        pad: int = 0,
    ):
        super().__init__()
        self.num_keypoints = num_keypoints
        self.temperature = temperature
        self.scale_factor = scale_factor
        self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features)
        self.kp = nn.Conv2d(self.predictor.out_filters, num_keypoints, kernel_size=7, padding=pad)
        self.jacobian: nn.Conv2d | None = None
        if estimate_jacobian:
            self.jacobian = nn.Conv2d(
                self.predictor.out_filters, 4 * num_keypoints, kernel_size=7, padding=pad
            )
            with torch.no_grad():
                # Start from identity Jacobians, as FOMM does, so early training sees pure translations.
                self.jacobian.weight.zero_()
                self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(num_keypoints))
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def forward(self, image: Tensor) -> dict[str, Tensor]:
        x = self.down(image) if self.scale_factor != 1 else image
        features = self.predictor(x)
        heatmaps = softmax_heatmaps(self.kp(features), self.temperature)
        out = {"keypoints": heatmap_to_keypoints(heatmaps), "heatmaps": heatmaps, "features": features}
        if self.jacobian is not None:
            b, k, h, w = heatmaps.shape
            jac_map = self.jacobian(features).reshape(b, k, 4, h, w)
            jac = (jac_map * heatmaps[:, :, None]).sum(dim=(-2, -1))
            out["jacobians"] = jac.reshape(b, k, 2, 2)
        return out


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of ``[K, 2]`` points (Andrew's monotone chain + shoelace); 0 if degenerate."""
    pts = sorted({(float(p[0]), float(p[1])) for p in points})
    if len(pts) < 3:
        return 0.0

    def cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[tuple[float, float]] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[tuple[float, float]] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    area = 0.0
    for i in range(len(hull)):
        x0, y0 = hull[i]
        x1, y1 = hull[(i + 1) % len(hull)]
        area += x0 * y1 - x1 * y0
    return abs(area) / 2.0


def convex_hull_area(points: Tensor) -> Tensor:
    """Convex-hull area of each point set: ``[..., K, 2] -> [...]`` (no gradient; computed on the CPU)."""
    flat = points.detach().reshape(-1, points.shape[-2], 2).to("cpu", torch.float64).numpy()
    areas = [_hull_area(p) for p in flat]
    return torch.tensor(areas, dtype=points.dtype, device=points.device).reshape(points.shape[:-2])


def relative_keypoints(
    kp_source: Tensor,
    kp_driving: Tensor,
    kp_driving_initial: Tensor,
    adapt_scale: bool = False,
) -> Tensor:
    """FOMM relative motion transfer (``normalize_kp`` with relative movement; also used by FSRT).

    ``kp_new = kp_source + (kp_driving - kp_driving_initial) * s`` where ``s = 1``, or with ``adapt_scale``
    ``s = sqrt(area(hull(kp_source)) / area(hull(kp_driving_initial)))`` per batch element, which adapts the
    motion magnitude to the relative face size (``s = 1`` where the driving hull is degenerate).

    Args:
        kp_source: ``[B, K, 2]``.
        kp_driving: ``[B, K, 2]`` or ``[B, T, K, 2]``.
        kp_driving_initial: ``[B, K, 2]`` (driving keypoints of the frame aligned with the source).
        adapt_scale: use the convex-hull scale.

    Returns:
        The same shape as ``kp_driving``.
    """
    if kp_driving.dim() == kp_source.dim() + 1:
        kp_source = kp_source.unsqueeze(1)
        kp_driving_initial = kp_driving_initial.unsqueeze(1)
    diff = kp_driving - kp_driving_initial
    if adapt_scale:
        src_area = convex_hull_area(kp_source.reshape(-1, *kp_source.shape[-2:]))
        drv_area = convex_hull_area(kp_driving_initial.reshape(-1, *kp_driving_initial.shape[-2:]))
        scale = torch.where(
            drv_area > 1e-12, torch.sqrt(src_area / drv_area.clamp_min(1e-12)), torch.ones_like(drv_area)
        )
        scale = scale.reshape(kp_source.shape[0], *([1] * (diff.dim() - 1)))
        diff = diff * scale
    return kp_source + diff


__all__ = [
    "KeypointDetector",
    "convex_hull_area",
    "heatmap_to_keypoints",
    "keypoints_to_heatmaps",
    "make_coordinate_grid",
    "normalized_to_pixels",
    "pixels_to_normalized",
    "relative_keypoints",
    "softmax_heatmaps",
]
