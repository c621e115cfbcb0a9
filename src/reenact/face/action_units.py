"""Binary facial action units: the landmark-geometry estimator (default) and py-feat, selected by name.

================ ==========================================================================================
AU backend       what it is, which AUs, how to enable
================ ==========================================================================================
``geometry``     the default, offline: 3D face model fit to the 68 landmarks of a landmark backend, 6 units
                 (AU1/2, AU4, AU12, AU25, AU26, AU43/45; rules below).
``py-feat``      :class:`reenact.face.pyfeat_backend.PyFeatAUBackend`: py-feat 0.6.x ``Detector``
                 (retinaface + mobilefacenet + xgb), 20 units (AU01 AU02 AU04 AU05 AU06 AU07 AU09 AU10 AU11
                 AU12 AU14 AU15 AU17 AU20 AU23 AU24 AU25 AU26 AU28 AU43) binarised at 0.5, the AUH
                 detector of PECHead. Needs ``pip install py-feat`` and its model files in
                 ``site-packages/feat/resources`` or ``$REENACT_PYFEAT_MODELS``; never downloads.
================ ==========================================================================================

Select one with ``AUH(au_backend="geometry" | "py-feat")``; :func:`get_au_backend` returns the py-feat
backend or ``None`` for the geometry estimator. The rest of this docstring describes ``geometry``.

py-feat fetches its models at run time, so the default reads AUs from landmark geometry. Raw 2D distances
mix expression with head pose (a pitched head shortens every vertical distance) and with identity (some
people have high brows), so the landmarks are first explained by :func:`reenact.face.pose.fit_pose`: pose,
identity coefficients and the expression blendshape coefficients of
:class:`~reenact.face.model3d.FaceModel3D`, each in ``[0, 1]``. The AUs are
thresholds on those pose-free quantities:

========== =========================== ===================================================================
AU         FACS name                   rule (``e`` = fitted expression coefficients)
========== =========================== ===================================================================
AU1/2      inner + outer brow raiser   ``e.brow_raise > 0.5`` (the model raises the whole brow together)
AU4        brow lowerer                ``e.brow_lower > 0.5``
AU12       lip corner puller           ``e.smile > 0.5``
AU25       lips part                   mean inner-lip gap (61-67, 62-66, 63-65) of the fitted 3D shape
                                       ``> 4 mm`` (closed lips: ~1 mm)
AU26       jaw drop                    ``e.jaw_open > 0.5``
AU43/45    eye closure / blink         mean of ``e.blink_left``, ``e.blink_right`` ``> 0.5`` (in one frame a
                                       blink, AU45, and closed eyes, AU43, look the same)
========== =========================== ===================================================================

The 0.5 coefficient threshold mirrors py-feat's binarisation of AU probabilities at 0.5. The 4 mm lip gap
is about 3 mm of parting beyond the closed model mouth, roughly ``jaw_open = 0.12``, so AU25 fires before
AU26, as in FACS. The unit is the model's (1 unit = 70 mm, half an average face width).

Validation on dlib landmarks of synthetic renders (192 frames, 12 identities, seed 7, 128 px upsampled to
256): accuracy 0.894 over the six units; recall AU25 0.91, AU26 0.88, AU43/45 0.67 (3 positives); AU12
recall 0 (dlib barely moves the lip corners on the rendered smiles, at any prior strength tried); AU4 fires
on 11% of frames with no brow lowering; no AU1/2 positives occurred in that sample. On exact ground-truth
landmarks every unit is recovered (``tests/test_face_metrics.py``). Read AUH from this backend as a
comparison between models evaluated with it, not as py-feat's AUH.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
import torch

from reenact.face.model3d import EXPRESSION_NAMES, MM_PER_UNIT, FaceModel3D
from reenact.face.pose import LANDMARK_SIGMA, PoseFit, fit_pose
from reenact.face.pyfeat_backend import PyFeatAUBackend

#: Names of the estimated units, in the column order of :func:`action_units_from_shape`.
AU_NAMES: tuple[str, ...] = ("AU1/2", "AU4", "AU12", "AU25", "AU26", "AU43/45")
#: Threshold on a fitted expression coefficient (py-feat binarises probabilities at 0.5).
COEFFICIENT_THRESHOLD = 0.5
#: Inner-lip gap above which the lips count as parted (AU25), millimetres.
LIPS_PART_MM = 4.0
#: Inner-lip landmark pairs (upper, lower) whose vertical gap measures lip parting.
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))

BACKEND = ("landmark geometry: 3D face model fit (pose + identity + expression) to 68 landmarks, AUs "
           "thresholded from blendshape coefficients and the fitted lip gap")


def _column(name: str) -> int:
    return EXPRESSION_NAMES.index(name)


def action_units_from_shape(expression: np.ndarray, shape_3d: np.ndarray) -> np.ndarray:
    """Binary AUs ``[N, 6]`` (bool, order of :data:`AU_NAMES`) from expression coefficients and 3D shape.

    Args:
        expression: ``[N, E]`` coefficients in the order of ``FaceModel3D.expression_names``.
        shape_3d: ``[N, 68, 3]`` canonical landmarks in model units (pose-free), for the lip gap.

    Also labels ground truth: pass the synthetic annotation's ``expression`` and
    ``FaceModel3D.landmarks_3d(identity_coeffs, expression)``.
    """
    e = np.asarray(expression, dtype=np.float64)
    shape = np.asarray(shape_3d, dtype=np.float64)
    gap_mm = np.mean([shape[:, lower, 1] - shape[:, upper, 1] for upper, lower in _INNER_LIP_PAIRS], 0) * MM_PER_UNIT
    blink = (e[:, _column("blink_left")] + e[:, _column("blink_right")]) / 2
    return np.stack([
        e[:, _column("brow_raise")] > COEFFICIENT_THRESHOLD,
        e[:, _column("brow_lower")] > COEFFICIENT_THRESHOLD,
        e[:, _column("smile")] > COEFFICIENT_THRESHOLD,
        gap_mm > LIPS_PART_MM,
        e[:, _column("jaw_open")] > COEFFICIENT_THRESHOLD,
        blink > COEFFICIENT_THRESHOLD,
    ], 1)


def ground_truth_action_units(identity_coeffs: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Binary AUs ``[N, 6]`` of synthetic ground truth: identity ``[I]`` or ``[N, I]``, expression ``[N, E]``."""
    with torch.no_grad():
        shape = FaceModel3D().landmarks_3d(torch.as_tensor(np.asarray(identity_coeffs, dtype=np.float64)),
                                           torch.as_tensor(np.asarray(expression, dtype=np.float64)))
    return action_units_from_shape(expression, shape.numpy())


def estimate_action_units(landmarks: np.ndarray, fit: PoseFit | None = None,
                          landmark_sigma: float = LANDMARK_SIGMA) -> np.ndarray:
    """``[N, 68, 2]`` (or ``[68, 2]``) pixel landmarks -> binary AUs ``[N, 6]`` (order of :data:`AU_NAMES`).

    ``fit`` reuses an existing :func:`fit_pose` result of the same landmarks (the pose metrics fit them too).
    """
    if fit is None:
        fit = fit_pose(landmarks, fit_shape=True, landmark_sigma=landmark_sigma)
    return action_units_from_shape(fit.expression, fit.shape_3d())


#: Names accepted by :func:`get_au_backend` (and ``AUH(au_backend=...)``).
AU_BACKEND_NAMES: tuple[str, ...] = ("geometry", "py-feat")


@lru_cache(maxsize=8)
def get_au_backend(name: str = "geometry", **options: Any) -> PyFeatAUBackend | None:
    """``None`` for the landmark-geometry estimator (it runs inside the metrics on fitted landmarks), or the
    frame-based backend ``name`` (cached per arguments, so the AUH of every protocol shares one loaded model).
    ``KeyError`` for an unknown name (lists the known ones)."""
    if name == "geometry":
        if options:
            raise TypeError(f"the geometry AU backend takes no options, got {sorted(options)}")
        return None
    if name == "py-feat":
        return PyFeatAUBackend(**options)
    raise KeyError(f"unknown AU backend {name!r}; known: {', '.join(AU_BACKEND_NAMES)}")


__all__ = [
    "AU_BACKEND_NAMES", "AU_NAMES", "BACKEND", "COEFFICIENT_THRESHOLD", "LIPS_PART_MM", "action_units_from_shape",
    "estimate_action_units", "get_au_backend", "ground_truth_action_units",
]
