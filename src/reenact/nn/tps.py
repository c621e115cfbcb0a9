"""Random affine + thin-plate-spline transforms for equivariance losses (FOMM ``Transform``,
Siarohin et al. 2019, ``modules/model.py``).

A transform ``T`` maps normalised coordinates to normalised coordinates (``[-1, 1]``, x-y; see
:mod:`reenact.nn.keypoints`). :meth:`RandomTPS.transform_frame` produces ``frame'(p) = frame(T(p))`` by
backward sampling, so a keypoint detected at ``q`` in ``frame'`` corresponds to ``T(q)`` in ``frame``:
the equivariance constraint is ``kp(frame) ~ T(kp(frame'))``
(see :func:`reenact.nn.losses.equivariance_loss`).

As in FOMM, the radial basis is ``r^2 log r`` with ``r`` the L1 (not L2) distance to the control points,
and control points lie on a regular ``points_tps x points_tps`` grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from reenact.nn.keypoints import make_coordinate_grid


class RandomTPS:
    """One random transform per batch element.

    ``theta = [I | 0] + N(0, sigma_affine^2)`` (a ``[B, 2, 3]`` affine) plus a TPS displacement with
    ``points_tps^2`` control points and weights ``N(0, sigma_tps^2)``. ``sigma_affine = sigma_tps = 0`` is
    the identity.

    Args:
        batch: ``B``.
        sigma_affine: std of the affine perturbation (FOMM vox: 0.05).
        sigma_tps: std of the TPS weights (FOMM vox: 0.005).
        points_tps: control points per side (FOMM vox: 5); 0 disables the TPS part.
        generator: optional ``torch.Generator`` for reproducible draws.
        device, dtype: where the parameters live.
    """

    def __init__(
        self,
        batch: int,
        sigma_affine: float = 0.05,
        sigma_tps: float = 0.005,
        points_tps: int = 5,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ):
        self.batch = batch
        noise = torch.randn(batch, 2, 3, generator=generator, dtype=dtype) * sigma_affine
        self.theta = (noise + torch.eye(2, 3, dtype=dtype).unsqueeze(0)).to(device)
        self.tps = points_tps > 0
        if self.tps:
            self.control_points = make_coordinate_grid(
                points_tps, points_tps, dtype=dtype, device=device
            ).view(-1, 2)
            params = torch.randn(batch, 1, points_tps**2, generator=generator, dtype=dtype) * sigma_tps
            self.control_params = params.to(device)

    def warp_coordinates(self, coordinates: Tensor) -> Tensor:
        """Apply ``T``: ``[B, N, 2] -> [B, N, 2]`` (``[1, N, 2]`` broadcasts over the batch)."""
        theta = self.theta.to(coordinates)
        transformed = (
            torch.matmul(theta[:, None, :, :2], coordinates.unsqueeze(-1)).squeeze(-1) + theta[:, None, :, 2]
        )
        if self.tps:
            cp = self.control_points.to(coordinates)
            dist = (coordinates.unsqueeze(2) - cp.view(1, 1, -1, 2)).abs().sum(-1)  # [B, N, P]
            basis = dist.pow(2) * torch.log(dist + 1e-6)
            transformed = transformed + (basis * self.control_params.to(coordinates)).sum(dim=2, keepdim=True)
        return transformed

    def transform_frame(self, frame: Tensor, padding_mode: str = "reflection") -> Tensor:
        """``frame [B, C, H, W] -> frame'`` with ``frame'(p) = frame(T(p))`` (reflection padding, as FOMM)."""
        b, _, h, w = frame.shape
        grid = make_coordinate_grid(h, w, dtype=frame.dtype, device=frame.device).view(1, h * w, 2)
        grid = self.warp_coordinates(grid).view(self.batch, h, w, 2)
        return F.grid_sample(frame, grid, padding_mode=padding_mode, align_corners=True)

    def jacobian(self, coordinates: Tensor) -> Tensor:
        """Jacobian of ``T`` at ``coordinates [B, N, 2]`` -> ``[B, N, 2, 2]``
        (row 0: d x' / d(x, y), row 1: d y' / d(x, y))."""
        with torch.enable_grad():
            coords = (
                coordinates.detach().requires_grad_(True) if not coordinates.requires_grad else coordinates
            )
            new = self.warp_coordinates(coords)
            grad_x = torch.autograd.grad(new[..., 0].sum(), coords, create_graph=True)[0]
            grad_y = torch.autograd.grad(new[..., 1].sum(), coords, create_graph=True)[0]
        return torch.stack([grad_x, grad_y], dim=-2)
