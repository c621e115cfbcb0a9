"""Face detection + 68 landmarks behind one interface, selected by name.

=================== ========================================================================================
name                backend
=================== ========================================================================================
``dlib``            dlib HOG detector + ``shape_predictor_68`` (files of the PyPI package
                    face-recognition-models); offline, the default.
``face-alignment``  S3FD + 2D-FAN4 of the ``face-alignment`` package, the landmark network FOMM's AKD used;
                    available when both weights files resolve through :mod:`reenact.weights`
                    (``face-alignment-2dfan4`` / ``face-alignment-s3fd``), since nothing is downloaded.
``mediapipe``       MediaPipe FaceLandmarker; needs a user-supplied ``face_landmarker.task`` file
                    (``model_path=`` or ``$REENACT_MEDIAPIPE_TASK``); the 478-point mesh is mapped to the
                    68-point iBUG layout with :data:`MEDIAPIPE_TO_68`. The landmarker is created with
                    ``output_face_blendshapes`` and ``output_facial_transformation_matrixes``:
                    :meth:`MediapipeLandmarks.analyse` also returns the 52 blendshape scores and the 4x4
                    head transformation matrix (the ``mediapipe`` head-pose backend of
                    :mod:`reenact.face.pose`).
=================== ========================================================================================

Every backend returns the landmarks of the largest face as ``[68, 2]`` float32 ``(x, y)`` pixels with pixel
centres at integer coordinates (the convention of :mod:`reenact.face.model3d`), or ``None`` when no face is
found. Construction never fails for a missing model: :meth:`LandmarkBackend.unavailable_reason` says why a
backend cannot run, so metrics can report the reason instead of a number.
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import numpy as np

from reenact import weights
from reenact.face.backend import FaceBackend

#: Face-mesh vertex for each iBUG-68 landmark (jaw 17, brows 5+5, nose bridge 4, nostrils 5, eyes 6+6, outer
#: lip 12, inner lip 8), the widely used correspondence between MediaPipe's canonical mesh and 300-W; the jaw
#: contour is approximate because the mesh outline does not follow 300-W's ear-to-chin curve exactly.
MEDIAPIPE_TO_68: tuple[int, ...] = (
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    71, 63, 105, 66, 107,
    336, 296, 334, 293, 301,
    168, 197, 5, 4,
    75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144,
    362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)

MEDIAPIPE_TASK_ENV = "REENACT_MEDIAPIPE_TASK"


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an [H, W, 3] uint8 RGB image, got {image.shape} {image.dtype}")
    return np.ascontiguousarray(image)


class LandmarkBackend(FaceBackend):
    """Detect the largest face of an ``[H, W, 3]`` uint8 RGB image and return its 68 landmarks."""

    name: ClassVar[str]

    _lazy_attributes: ClassVar[tuple[str, ...]] = ("_analyzer", "_model", "_landmarker")

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        """``[H, W, 3]`` uint8 RGB -> ``[68, 2]`` float32 pixels of the largest face, or ``None``."""
        raise NotImplementedError


class DlibLandmarks(LandmarkBackend):
    """dlib's HOG frontal detector (``upsample`` pyramid steps) and 68-point shape predictor."""

    name = "dlib"

    def __init__(self, upsample: int = 1) -> None:
        self.upsample = upsample
        self._analyzer: Any = None

    def describe(self) -> str:
        return "dlib HOG + shape_predictor_68 (face-recognition-models)"

    def unavailable_reason(self) -> str | None:
        from reenact.face.dlib_backend import dlib_unavailable_reason

        return dlib_unavailable_reason("dlib-68")

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        if self._analyzer is None:
            from reenact.face.dlib_backend import DlibFaceAnalyzer

            self._analyzer = DlibFaceAnalyzer(upsample=self.upsample, predictor_path=weights.resolve("dlib-68"))
        found = self._analyzer.largest_face(_as_rgb_uint8(image))
        return None if found is None else found[1].astype(np.float32)


class FaceAlignmentLandmarks(LandmarkBackend):
    """face-alignment's S3FD detector + 2D-FAN4 (``LandmarksType.TWO_D``), from local weights files only."""

    name = "face-alignment"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None

    def describe(self) -> str:
        return "face-alignment S3FD + 2D-FAN4 (FOMM's AKD landmarks)"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("face_alignment") is None:
            return "the face-alignment package is not installed"
        return weights.missing_reason("face-alignment-2dfan4")

    def _load(self) -> Any:
        import face_alignment
        import face_alignment.api

        fan = str(weights.resolve("face-alignment-2dfan4"))
        s3fd = str(weights.resolve("face-alignment-s3fd"))
        # face-alignment fetches 2D-FAN through load_file_from_url (torch hub dir only); pointing it at the
        # resolved file honours $REENACT_WEIGHTS_DIR and the per-weight variables, and can never download.
        with mock.patch.object(face_alignment.api, "load_file_from_url", lambda *args, **kwargs: fan):
            return face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=self.device, face_detector="sfd",
                face_detector_kwargs={"path_to_detector": s3fd}, compile=False,
            )

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        if self._model is None:
            self._model = self._load()
        results = self._model.get_landmarks_from_image(_as_rgb_uint8(image))
        if not results:
            return None
        # Largest face by landmark bounding-box area, as the dlib backend picks the largest box.
        areas = [float(np.prod(points[:, :2].max(0) - points[:, :2].min(0))) for points in results]
        return np.asarray(results[int(np.argmax(areas))][:, :2], dtype=np.float32)


class MediapipeLandmarks(LandmarkBackend):
    """MediaPipe FaceLandmarker (tasks API) with a user-supplied ``.task`` model, mapped to 68 points.

    The mesh is returned in normalised ``[0, 1]`` image coordinates of pixel edges; ``x * W - 0.5`` moves it
    to the pixel-centre convention of the other backends.
    """

    name = "mediapipe"

    def __init__(self, model_path: str | None = None) -> None:
        self.model_path = model_path or os.environ.get(MEDIAPIPE_TASK_ENV)
        self._landmarker: Any = None

    def describe(self) -> str:
        return f"mediapipe FaceLandmarker ({Path(self.model_path).name if self.model_path else 'no model'}), " \
               "478-point mesh mapped to 68"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("mediapipe") is None:
            return "mediapipe is not installed"
        if not self.model_path:
            return (f"mediapipe needs a FaceLandmarker model file: pass model_path= or set ${MEDIAPIPE_TASK_ENV} "
                    "to face_landmarker.task (MediaPipe model card downloads; not shipped by the PyPI package)")
        if not Path(self.model_path).is_file():
            return f"mediapipe FaceLandmarker model not found: {self.model_path}"
        return None

    def _detect(self, image: np.ndarray) -> tuple[Any, tuple[int, int]]:
        """Run FaceLandmarker (created with blendshapes and transformation matrices) -> (result, (H, W))."""
        if self._landmarker is None and (reason := self.unavailable_reason()) is not None:
            raise RuntimeError(reason)
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions
        from mediapipe.tasks.python.vision import FaceLandmarker, FaceLandmarkerOptions

        if self._landmarker is None:
            options = FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(self.model_path)),
                                            num_faces=1, output_face_blendshapes=True,
                                            output_facial_transformation_matrixes=True)
            self._landmarker = FaceLandmarker.create_from_options(options)
        rgb = _as_rgb_uint8(image)
        return self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb)), rgb.shape[:2]

    @staticmethod
    def _landmarks68(result: Any, size: tuple[int, int]) -> np.ndarray:
        mesh = np.array([(p.x, p.y) for p in result.face_landmarks[0]], dtype=np.float64)
        points = mesh[list(MEDIAPIPE_TO_68)] * np.array([size[1], size[0]]) - 0.5
        return points.astype(np.float32)

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        result, size = self._detect(image)
        if not result.face_landmarks:
            return None
        return self._landmarks68(result, size)

    def analyse(self, image: np.ndarray) -> dict[str, Any] | None:
        """Everything FaceLandmarker gives for the face of ``image`` (``None`` when no face is found).

        Returns:
            ``landmarks68``: ``[68, 2]`` float32 pixels (as :meth:`detect`); ``blendshapes``: the 52 ARKit-style
            scores in ``[0, 1]`` by MediaPipe category name (``jawOpen``, ``eyeBlinkLeft``, ...);
            ``transform``: ``[4, 4]`` float64 facial transformation matrix from MediaPipe's canonical face
            model to the face in its metric camera frame (x right, y up, z toward the viewer);
            :func:`reenact.face.pose.pose_from_transformation_matrix` turns it into (yaw, pitch, roll).
        """
        result, size = self._detect(image)
        if not result.face_landmarks:
            return None
        blendshapes = {c.category_name: float(c.score) for c in (result.face_blendshapes or [[]])[0]}
        matrices = result.facial_transformation_matrixes or []
        transform = np.asarray(matrices[0], dtype=np.float64).reshape(4, 4) if len(matrices) else None
        return {"landmarks68": self._landmarks68(result, size), "blendshapes": blendshapes, "transform": transform}


LANDMARK_BACKENDS: dict[str, type[LandmarkBackend]] = {
    cls.name: cls for cls in (DlibLandmarks, FaceAlignmentLandmarks, MediapipeLandmarks)
}


@lru_cache(maxsize=16)
def get_landmark_backend(name: str = "dlib", **kwargs: Any) -> LandmarkBackend:
    """The landmark backend ``name`` (cached per arguments, so metrics share one loaded model per process).

    Raises:
        KeyError: unknown name (lists the known ones).
    """
    try:
        cls = LANDMARK_BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown landmark backend {name!r}; known: {', '.join(LANDMARK_BACKENDS)}") from None
    return cls(**kwargs)


__all__ = [
    "LANDMARK_BACKENDS", "MEDIAPIPE_TO_68", "DlibLandmarks", "FaceAlignmentLandmarks", "LandmarkBackend",
    "MediapipeLandmarks", "get_landmark_backend",
]
