"""dlib's HOG face detector and 68-point landmark predictor behind one small class.

The predictor file ``shape_predictor_68_face_landmarks.dat`` ships with the ``face-recognition-models``
package. Its ``__init__`` imports ``pkg_resources``, which recent setuptools no longer provides, so the
models folder is located from the package spec without importing the package.

Landmarks come back in dlib's pixel convention: pixel centres at integer coordinates, ``(x, y)``, the
same convention as :func:`reenact.face.model3d.to_pixels` and the synthetic ground truth.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"


def dlib_unavailable_reason(weight_name: str) -> str | None:
    """Why a dlib model named in :mod:`reenact.weights` (``dlib-68``, ``dlib-face-recognition``) cannot run
    here, or ``None`` when dlib and the model file are both present."""
    from reenact import weights

    if importlib.util.find_spec("dlib") is None:
        return "dlib is not installed (pip install dlib-bin)"
    return weights.missing_reason(weight_name)


def dlib_models_dir() -> Path:
    """The ``models`` folder of the installed ``face-recognition-models`` package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("face-recognition-models is not installed: it provides dlib's landmark models")
    return Path(spec.submodule_search_locations[0]) / "models"


@dataclass(frozen=True)
class FaceBox:
    """A detection in pixels (``right``/``bottom`` exclusive, as dlib reports them) with its HOG score."""

    left: int
    top: int
    right: int
    bottom: int
    score: float

    @property
    def area(self) -> int:
        return max(0, self.right - self.left) * max(0, self.bottom - self.top)


class DlibFaceAnalyzer:
    """HOG frontal face detection (``dlib.get_frontal_face_detector``) and 68-point landmarks.

    Args:
        upsample: image pyramid upsampling steps of the detector; 1 finds faces down to ~40 px.
        predictor_path: a dlib shape predictor file; ``None`` uses the 68-point model of
            face-recognition-models. The predictor is loaded on first use.
    """

    def __init__(self, upsample: int = 1, predictor_path: str | Path | None = None) -> None:
        import dlib  # imported lazily: only detection and evaluation code needs dlib

        self._dlib = dlib
        self.upsample = int(upsample)
        self.detector = dlib.get_frontal_face_detector()
        self.predictor_path = Path(predictor_path) if predictor_path is not None else dlib_models_dir() / PREDICTOR_68
        self._predictor = None

    @property
    def predictor(self):
        if self._predictor is None:
            if not self.predictor_path.is_file():
                raise FileNotFoundError(f"dlib shape predictor not found: {self.predictor_path}")
            self._predictor = self._dlib.shape_predictor(str(self.predictor_path))
        return self._predictor

    @staticmethod
    def _image(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"expected an [H, W] or [H, W, 3] uint8 image, got {image.shape} {image.dtype}")
        return np.ascontiguousarray(image)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in an ``[H, W, 3]`` uint8 RGB (or ``[H, W]`` gray) image, best score first."""
        boxes, scores, _ = self.detector.run(self._image(image), self.upsample, 0.0)
        found = [
            FaceBox(b.left(), b.top(), b.right(), b.bottom(), float(s)) for b, s in zip(boxes, scores, strict=True)
        ]
        return sorted(found, key=lambda box: -box.score)

    def landmarks(self, image: np.ndarray, box: FaceBox) -> np.ndarray:
        """68 landmarks ``[68, 2]`` float32 (x, y pixels) of the face in ``box``."""
        rectangle = self._dlib.rectangle(box.left, box.top, box.right, box.bottom)
        shape = self.predictor(self._image(image), rectangle)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def largest_face(self, image: np.ndarray) -> tuple[FaceBox, np.ndarray] | None:
        """The largest detected face and its landmarks ``[68, 2]``, or ``None`` when no face is found."""
        boxes = self.detect(image)
        if not boxes:
            return None
        box = max(boxes, key=lambda b: b.area)
        return box, self.landmarks(image, box)
