"""The face metrics that read head pose and facial action units (PECHead supplement Sec. 2.4): ARD (cross-identity
reenactment), ARE (frontalisation) and AUH (expression transfer); they share the landmark detection and caching
of :class:`reenact.metrics.face.FaceMetric`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from reenact.face.action_units import AU_NAMES, action_units_from_shape, get_au_backend
from reenact.face.pose import BACKEND as POSE_BACKEND
from reenact.face.pose import PoseBackend, fit_pose, get_pose_backend
from reenact.face.pyfeat_backend import PYFEAT_THRESHOLD
from reenact.metrics.base import (
    CROSS_IDENTITY,
    EDITING,
    EXPRESSION_TRANSFER,
    FRONTALISATION,
)
from reenact.metrics.face import FaceMetric, scatter_rows
from reenact.metrics.registry import register_metric


class _PoseMetric(FaceMetric):
    """ARD/ARE. ``pose``: head-pose backend name (:data:`reenact.face.pose.POSE_BACKENDS`): ``landmarks-3dmm``
    (default, the 3D face model fit to the landmark backend's 68 points) or ``mediapipe`` (FaceLandmarker's
    transformation matrix; the landmark backend is then unused); ``pose_options``: its keyword arguments."""

    parts = ("yaw", "pitch", "roll")

    def __init__(self, pose: str = "landmarks-3dmm", pose_options: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pose_name = pose
        self.pose_backend: PoseBackend = get_pose_backend(pose, **(pose_options or {}))

    def _extra_backends(self) -> list[str]:
        return [f"pose: {POSE_BACKEND if self.pose_name == 'landmarks-3dmm' else self.pose_backend.describe()}"]

    def backend(self) -> str:
        if not self.pose_backend.needs_landmarks:
            return f"pose: {self.pose_backend.describe()} at {self.eval_size}x{self.eval_size}"
        return super().backend()

    def unavailable_reason(self) -> str | None:
        if not self.pose_backend.needs_landmarks:
            return self.pose_backend.unavailable_reason()
        return super().unavailable_reason()


@register_metric
class ARD(_PoseMetric):
    """Average rotation distance: mean |Euler angle difference| (degrees) of driving vs generated head pose."""

    name = "ard"
    protocols = (CROSS_IDENTITY,)
    definition = "mean over frames and (yaw, pitch, roll) of |angle(gen) - angle(drv)|, degrees (PECHead 2.4)"

    def score(self, generated: np.ndarray, driving: np.ndarray,
              context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if not self.pose_backend.needs_landmarks:  # NaN rows (no face) propagate to skipped frames
            difference = np.abs(self.pose_backend.estimate(generated, [None] * len(generated))
                                - self.pose_backend.estimate(driving, [None] * len(driving)))
            return difference.mean(1), difference
        index, points_g, points_d = self._pairs(generated, driving)
        if index.size == 0:
            return np.full(len(generated), np.nan), np.full((len(generated), 3), np.nan)
        poses = fit_pose(np.concatenate([points_g, points_d])).pose
        difference = np.abs(poses[:index.size] - poses[index.size:])
        return scatter_rows(len(generated), index, difference.mean(1)), scatter_rows(len(generated), index, difference)


@register_metric
class ARE(_PoseMetric):
    """Average rotation error against the frontal pose (0, 0, 0): frontalisation (PECHead 2.4)."""

    name = "are"
    protocols = (EDITING,)
    editing_tasks = (FRONTALISATION,)
    definition = "mean over frames and (yaw, pitch, roll) of |angle(gen) - 0|, degrees (PECHead 2.4)"

    def score(self, generated: np.ndarray, driving: np.ndarray,
              context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if not self.pose_backend.needs_landmarks:
            error = np.abs(self.pose_backend.estimate(generated, [None] * len(generated)))
            return error.mean(1), error
        found = self._landmarks(generated)
        index = np.array([i for i, p in enumerate(found) if p is not None], dtype=int)
        if index.size == 0:
            return np.full(len(generated), np.nan), np.full((len(generated), 3), np.nan)
        error = np.abs(fit_pose(np.stack([found[i] for i in index])).pose)
        return scatter_rows(len(generated), index, error.mean(1)), scatter_rows(len(generated), index, error)


@register_metric
class AUH(FaceMetric):
    """Action-unit Hamming distance: fraction of the binary AUs that differ, driving vs generated (PECHead 2.4).

    Lower is better; ``details.accuracy`` is ``1 - auh`` and ``details.per_part`` the disagreement rate of
    each AU (order of :data:`reenact.face.action_units.AU_NAMES`, or of the AU backend's ``au_names``).

    Args:
        au_backend: ``"geometry"`` (default: AUs from the 3D face model fit to the landmark backend's 68
            points, 6 units) or ``"py-feat"`` (py-feat's Detector, 20 units binarised at 0.5, its own face
            detection; unavailable, with the reason, unless py-feat and its model files are present).
        au_options: keyword arguments of the AU backend (``model_dir``, ``device`` for py-feat).
    """

    name = "auh"
    parts = AU_NAMES
    protocols = (CROSS_IDENTITY, EDITING)
    editing_tasks = (EXPRESSION_TRANSFER,)
    definition = (f"mean over frames of the fraction of the {len(AU_NAMES)} binary AUs ({', '.join(AU_NAMES)}) "
                  "that differ between gen and drv (PECHead 2.4)")

    def __init__(self, au_backend: str = "geometry", au_options: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        au = get_au_backend(au_backend, **(au_options or {}))
        super().__init__(**kwargs)
        self.au_name = au_backend
        self.au_backend = au
        if au is not None:  # a frame-based AU model: its own units, its own face detection
            self.parts = au.au_names
            self.definition = (f"mean over frames of the fraction of the {len(au.au_names)} binary AUs "
                               f"({', '.join(au.au_names)}) that differ between gen and drv (PECHead 2.4)")
            self.add_state("part_totals", default=torch.zeros(len(self.parts), dtype=torch.float64),
                           dist_reduce_fx="sum")

    def backend(self) -> str:
        if self.au_backend is not None:
            return f"AUs: {self.au_backend.describe()} at {self.eval_size}x{self.eval_size}"
        return super().backend()

    def unavailable_reason(self) -> str | None:
        if self.au_backend is not None:
            return self.au_backend.unavailable_reason()
        return super().unavailable_reason()

    def _extra_backends(self) -> list[str]:
        from reenact.face.action_units import BACKEND

        return [f"AUs: {BACKEND}"]

    def score(self, generated: np.ndarray, driving: np.ndarray,
              context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        if self.au_backend is not None:
            # NaN rows (no face on either side) make the frame skipped; AUs present at probability > 0.5.
            p_g, p_d = self.au_backend.probabilities(generated), self.au_backend.probabilities(driving)
            differs = ((p_g > PYFEAT_THRESHOLD) != (p_d > PYFEAT_THRESHOLD)).astype(np.float64)
            differs[np.isnan(p_g).any(1) | np.isnan(p_d).any(1)] = np.nan
            return differs.mean(1), differs
        index, points_g, points_d = self._pairs(generated, driving)
        if index.size == 0:
            return np.full(len(generated), np.nan), np.full((len(generated), len(AU_NAMES)), np.nan)
        fit = fit_pose(np.concatenate([points_g, points_d]))
        units = action_units_from_shape(fit.expression, fit.shape_3d())
        differs = (units[:index.size] != units[index.size:]).astype(np.float64)
        return (scatter_rows(len(generated), index, differs.mean(1)), scatter_rows(len(generated), index, differs))

    def details(self) -> dict[str, Any]:
        details = super().details()
        details["accuracy"] = 1.0 - float(self._value()) if int(self.count) > 0 else None
        return details


__all__ = ["ARD", "ARE", "AUH"]
