"""Face geometry shared by the data generator, the models and the evaluation.

:mod:`reenact.face.model3d` holds the differentiable 3D landmark face model on the iBUG 68-point layout
and its camera conventions; :mod:`reenact.face.dlib_backend` wraps dlib's HOG detector and 68-point
predictor (imported on demand, since it needs dlib).

Face-analysis backends, each selected by name, each reporting ``unavailable_reason()`` instead of failing
(``reenact doctor`` lists them all); nothing is ever downloaded:

============== ================== ====================================================================
kind           name               how to enable
============== ================== ====================================================================
landmarks      ``dlib``           default; dlib + face-recognition-models (:mod:`.landmarks`)
landmarks      ``face-alignment`` face-alignment package + 2D-FAN4/S3FD weights via :mod:`reenact.weights`
landmarks      ``mediapipe``      ``$REENACT_MEDIAPIPE_TASK`` = ``face_landmarker.task``; ``analyse()`` also
                                  gives the 52 blendshapes and the 4x4 head transformation matrix
identity       ``dlib``           default; face-recognition-models (:mod:`.identity`)
identity       ``arcface``        onnxruntime + the ``arcface-r100`` ONNX weights
head pose      ``landmarks-3dmm`` default; 3D face model fit to the 68 landmarks (:mod:`.pose`)
head pose      ``mediapipe``      as the mediapipe landmarks; Euler angles from the transformation matrix
                                  (:func:`.pose.pose_from_transformation_matrix`)
action units   ``geometry``       default; 6 units AU1/2 AU4 AU12 AU25 AU26 AU43/45 (:mod:`.action_units`)
action units   ``py-feat``        py-feat 0.6.x + its model files in ``feat/resources`` or
                                  ``$REENACT_PYFEAT_MODELS``; 20 units AU01-AU43 at 0.5 (:mod:`.pyfeat_backend`)
============== ================== ====================================================================
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
