"""Face geometry shared by the data generator, the models and the evaluation.

:mod:`reenact.face.model3d` holds the differentiable 3D landmark face model on the iBUG 68-point layout
and its camera conventions; :mod:`reenact.face.dlib_backend` wraps dlib's HOG detector and 68-point
predictor (imported on demand, since it needs dlib).
"""

from reenact.face.model3d import (
    EXPRESSION_NAMES,
    LANDMARK_GROUPS,
    MIRROR_68,
    NUM_LANDMARKS,
    FaceModel3D,
    rotation_matrix,
    to_normalized,
    to_pixels,
)

__all__ = [
    "EXPRESSION_NAMES",
    "LANDMARK_GROUPS",
    "MIRROR_68",
    "NUM_LANDMARKS",
    "FaceModel3D",
    "rotation_matrix",
    "to_normalized",
    "to_pixels",
]
