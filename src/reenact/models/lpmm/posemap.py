"""Head pose in degrees for LPMM (issue "Fidelity"; paper 004 Sec. 1 and 4.4: intuitive, rig-like pose control).

LPMM's parameters ``p`` are PCA components of landmarks (Eq. 1): they mix head pose and expression and carry no
angles. From the training annotations (landmarks and the annotated head pose ``(yaw, pitch, roll)`` of every
detected frame) this module fits two linear maps, in closed form:

* **pose of parameters** ``pose ~ A p + b`` (ridge least squares; ``A [3, k]``): the angles a parameter vector
  shows, e.g. the source's own pose;
* **parameters of a pose change** ``delta p = M (A M)^-1 delta pose`` with ``M = Cov(p, pose) Cov(pose)^-1``: the
  parameter change the training data pairs with a change of pose (the regression of ``p`` on the angles, so the
  correlated landmark motion of a head turn moves together), scaled so that ``A`` reads back exactly the asked
  change. Expression directions uncorrelated with pose are left alone.

``move(p, target)`` sets some or all of the angles: ``target [B, 3]`` degrees, ``NaN`` keeping an angle as it is.
Frontalisation is ``target = 0``. Everything is linear, as Eq. 1 is, so the maps are exact on the fitted data's
subspace and approximate beyond it; ``r2`` stores how much of each angle's variance ``A p + b`` explains.

An LPMM checkpoint written before the map existed loads with the map unfitted (pose editing then says so).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

#: Column order of every pose tensor here, as the annotations store it.
POSE_AXES = ("yaw", "pitch", "roll")


class PoseNotFittedError(RuntimeError):
    """Pose editing asked of an LPMM whose pose map was never fitted."""


class PoseMap(nn.Module):
    """Linear maps between LPMM parameters ``p [k]`` and head pose ``[3]`` (degrees), fitted from data.

    Buffers: ``weight [3, k]`` and ``bias [3]`` (``A``, ``b``), ``direction [k, 3]`` (``M (A M)^-1``), ``r2 [3]``,
    ``fitted`` (``[]`` bool).
    """

    def __init__(self, num_params: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.zeros(3, num_params))
        self.register_buffer("bias", torch.zeros(3))
        self.register_buffer("direction", torch.zeros(num_params, 3))
        self.register_buffer("r2", torch.zeros(3))
        self.register_buffer("fitted", torch.tensor(False))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checkpoints from before the pose map: load with the map unfitted rather than refuse the whole model.
        missing_keys: list[str] = args[2]
        keys = [prefix + name for name in ("weight", "bias", "direction", "r2", "fitted")]
        absent = not any(key in state_dict for key in keys)
        super()._load_from_state_dict(state_dict, prefix, *args)
        if absent:
            for key in keys:
                if key in missing_keys:
                    missing_keys.remove(key)

    @torch.no_grad()
    def fit(self, params: Tensor, pose: Tensor, ridge: float = 1e-4) -> PoseMap:
        """Fit from ``params [N, k]`` and their annotated ``pose [N, 3]`` (degrees) of the same frames.

        Raises:
            ValueError: fewer frames than parameters + 2, or a pose that never varies (no map can be fitted).
        """
        if params.shape[0] != pose.shape[0] or pose.shape[-1] != 3:
            raise ValueError(f"params {tuple(params.shape)} and pose {tuple(pose.shape)} do not pair up")
        count, size = params.shape
        if count < size + 2:
            raise ValueError(f"the pose map needs at least {size + 2} annotated frames, got {count}")
        p, angles = params.double(), pose.double()
        p_mean, pose_mean = p.mean(0), angles.mean(0)
        pc, ac = p - p_mean, angles - pose_mean
        cov_p = pc.T @ pc / (count - 1)
        cov_pose = ac.T @ ac / (count - 1)
        cross = pc.T @ ac / (count - 1)  # [k, 3] Cov(p, pose)
        if bool((cov_pose.diagonal() < 1e-6).any()):
            raise ValueError("the annotated head pose does not vary over the training frames: no pose map")
        scale = cov_p.diagonal().mean().clamp_min(1e-12)
        forward = torch.linalg.solve(cov_p + ridge * scale * torch.eye(size, dtype=p.dtype), cross).T  # [3, k]
        backward = cross @ torch.linalg.inv(cov_pose)  # [k, 3] M
        direction = backward @ torch.linalg.inv(forward @ backward)  # A (M (A M)^-1) = I
        residual = ac - pc @ forward.T
        self.weight.copy_(forward.to(self.weight))
        self.bias.copy_((pose_mean - forward @ p_mean).to(self.bias))
        self.direction.copy_(direction.to(self.direction))
        self.r2.copy_((1 - residual.pow(2).mean(0) / ac.pow(2).mean(0)).to(self.r2))
        self.fitted.fill_(True)
        return self

    def _check(self) -> None:
        if not bool(self.fitted):
            raise PoseNotFittedError(
                "this LPMM has no pose map (its checkpoint predates it, or it was never trained): head angles "
                "cannot be set; retrain it (`reenact fit --model lpmm`, the map is fitted from the training "
                "annotations' head poses) or edit its LP parameters directly")

    def pose(self, params: Tensor) -> Tensor:
        """``p [B, k]`` -> ``(yaw, pitch, roll) [B, 3]`` degrees."""
        self._check()
        return params @ self.weight.to(params).T + self.bias.to(params)

    def move(self, params: Tensor, target: Tensor, relative: bool = False) -> Tensor:
        """``params [B, k]`` with the head pose set to ``target [B, 3]`` degrees (``NaN``: keep that angle), or
        changed by ``target`` with ``relative``."""
        self._check()
        target = target.to(params).expand(params.shape[0], 3)
        keep = torch.isnan(target)
        change = target if relative else target - self.pose(params)
        change = torch.where(keep, torch.zeros_like(change), change)
        return params + change @ self.direction.to(params).T
