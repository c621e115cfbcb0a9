"""PECHead's free pose and expression editing as user controls (paper 000 Sec. 4.3; the counterpart of LPMM's
:mod:`reenact.models.lpmm.control`): head angles in degrees, absolute or relative to the source's, and expression
coefficients set, offset, scaled or taken from another image. ``reenact edit`` and ``reenact studio`` call these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from reenact.models.pechead.lightning_model import PECHead

#: Sweepable pose axes and their column in the ``[B, 3]`` pose (degrees).
POSE_AXES = {"yaw": 0, "pitch": 1, "roll": 2}


@dataclass
class PoseExpressionEdit:
    """One edit. Angles left ``None`` keep the source's (absolute mode) or add nothing (``relative_pose``);
    ``set_values`` then ``offsets`` change expression coefficients (by index) after ``expression_from`` and
    before ``expression_scale``."""

    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    relative_pose: bool = False
    set_values: dict[int, float] = field(default_factory=dict)
    offsets: dict[int, float] = field(default_factory=dict)
    expression_scale: float = 1.0


def edited_coefficients(model: PECHead, source: torch.Tensor, edit: PoseExpressionEdit,
                        expression_from: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pose [B, 3] degrees, expression [B, E])`` that :meth:`PECHead.edit` renders for ``source [B, 3, H, W]``.

    Raises:
        ValueError: an expression index outside ``0 .. E-1``.
    """
    coefficients = model.coefficients(source[:, None])
    pose = torch.zeros_like(coefficients["pose"][:, 0]) if edit.relative_pose else coefficients["pose"][:, 0].clone()
    for axis, angle in enumerate((edit.yaw, edit.pitch, edit.roll)):
        if angle is not None:
            pose[:, axis] = pose[:, axis] + angle if edit.relative_pose else angle
    expression = (model.coefficients(expression_from[:, None]) if expression_from is not None
                  else coefficients)["expression"][:, 0].clone()
    size = expression.shape[-1]
    for index in (*edit.set_values, *edit.offsets):
        if not 0 <= index < size:
            raise ValueError(f"expression coefficient {index} out of range 0..{size - 1}")
    for index, value in edit.set_values.items():
        expression[:, index] = value
    for index, value in edit.offsets.items():
        expression[:, index] += value
    return pose, expression * edit.expression_scale


def render(model: PECHead, source: torch.Tensor, edit: PoseExpressionEdit,
           expression_from: torch.Tensor | None = None) -> torch.Tensor:
    """``source [B, 3, H, W]`` rendered with ``edit`` -> ``[B, 3, H, W]``."""
    pose, expression = edited_coefficients(model, source, edit, expression_from)
    return model.edit(source, pose=pose, expression=expression, relative_pose=edit.relative_pose)


def sweep(model: PECHead, source: torch.Tensor, edit: PoseExpressionEdit, parameter: str, values: list[float],
          expression_from: torch.Tensor | None = None) -> torch.Tensor:
    """Frames ``[len(values), 3, H, W]`` of ``source [1, 3, H, W]`` with one parameter swept over ``values``
    on top of ``edit``: ``yaw``/``pitch``/``roll`` (degrees) or ``expr:I`` (coefficient ``I``).

    Raises:
        ValueError: an unknown parameter.
    """
    pose, expression = edited_coefficients(model, source, edit, expression_from)
    size = expression.shape[-1]
    index = parameter[5:]
    if parameter not in POSE_AXES and not (parameter.startswith("expr:") and index.isdigit() and int(index) < size):
        raise ValueError(f"pechead sweeps yaw, pitch, roll or expr:I (I < {size}), not {parameter!r}")
    frames = []
    for value in values:
        pose_now, expression_now = pose.clone(), expression.clone()
        if parameter in POSE_AXES:
            pose_now[:, POSE_AXES[parameter]] = value
        else:
            expression_now[:, int(index)] = value
        frames.append(model.edit(source, pose=pose_now, expression=expression_now,
                                 relative_pose=edit.relative_pose)[0])
    return torch.stack(frames)
