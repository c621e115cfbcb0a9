"""Identity embeddings (for AED and CSIM) behind one interface, selected by name.

=========== ============================================================================================
name        backend
=========== ============================================================================================
``dlib``    dlib's 128-d face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat`` of the PyPI
            package face-recognition-models) on dlib's 150x150 chip aligned from the 68 landmarks; offline,
            the default. Embeddings are not unit-length (norm ~1.4); dlib's same-person threshold is a
            Euclidean distance of 0.6.
``arcface`` insightface ArcFace ONNX (``glintr100.onnx`` / ``w600k_r50.onnx``, weight name ``arcface-r100``)
            run with onnxruntime: 5-point similarity alignment (eye centres, nose tip, mouth corners taken
            from the 68 landmarks) to insightface's 112x112 template, RGB scaled to [-1, 1]. Available when
            onnxruntime is installed and the model resolves (or ``model_path=`` is given).
=========== ============================================================================================

``embed(image, landmarks)`` takes an ``[H, W, 3]`` uint8 RGB image and the ``[68, 2]`` pixel landmarks of
the face (from :mod:`reenact.face.landmarks`) and returns a float64 vector; the alignment comes from the
landmarks, so the embedding follows the same detection that the landmark metrics use.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from reenact import weights
from reenact.face.backend import FaceBackend

#: insightface's ArcFace destination points in the 112x112 crop: subject's right eye (image left), left eye,
#: nose tip, right and left mouth corners (``insightface.utils.face_align.arcface_dst``).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """``[68, 2]`` iBUG landmarks -> ``[5, 2]`` (eye centres, nose tip 30, mouth corners 48 and 54)."""
    points = np.asarray(landmarks, dtype=np.float64)
    return np.stack([points[36:42].mean(0), points[42:48].mean(0), points[30], points[48], points[54]])


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b / (|a| |b|)`` of two ``[D]`` embeddings (CSIM, PECHead supplement Sec. 2.4)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def squared_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``|a - b|^2`` of two ``[D]`` embeddings (AED, FOMM Siarohin et al. 2019)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(diff @ diff)


class IdentityBackend(FaceBackend):
    """Identity embedding of the face given by its 68 landmarks in an ``[H, W, 3]`` uint8 RGB image."""

    name: ClassVar[str]
    dim: ClassVar[int]

    _lazy_attributes: ClassVar[tuple[str, ...]] = ("_model", "_session")

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB and ``[68, 2]`` pixel landmarks -> ``[dim]`` float64 embedding."""
        raise NotImplementedError


class DlibIdentity(IdentityBackend):
    """dlib ``face_recognition_model_v1`` (ResNet-29, 128-d) on the chip aligned from the 68 landmarks."""

    name = "dlib"
    dim = 128

    def __init__(self, padding: float = 0.25) -> None:
        self.padding = padding
        self._model: Any = None

    def describe(self) -> str:
        return "dlib face_recognition_model_v1 128-d ResNet (face-recognition-models)"

    def unavailable_reason(self) -> str | None:
        from reenact.face.dlib_backend import dlib_unavailable_reason

        return dlib_unavailable_reason("dlib-face-recognition")

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        import dlib

        if self._model is None:
            self._model = dlib.face_recognition_model_v1(str(weights.resolve("dlib-face-recognition")))
        points = np.asarray(landmarks, dtype=np.float64)
        left, top = np.floor(points.min(0)).astype(int)
        right, bottom = np.ceil(points.max(0)).astype(int)
        # The descriptor only uses the parts (dlib's chip alignment); the rectangle is bookkeeping.
        shape = dlib.full_object_detection(
            dlib.rectangle(int(left), int(top), int(right), int(bottom)),
            [dlib.point(int(round(x)), int(round(y))) for x, y in points],
        )
        rgb = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        descriptor = self._model.compute_face_descriptor(rgb, shape, num_jitters=0, padding=self.padding)
        return np.asarray(descriptor, dtype=np.float64)


class ArcFaceIdentity(IdentityBackend):
    """insightface ArcFace ONNX via onnxruntime (CPU), insightface's 5-point alignment to 112x112."""

    name = "arcface"
    dim = 512

    def __init__(self, model_path: str | None = None) -> None:
        self.model_path = model_path
        self._session: Any = None

    def _path(self) -> Path:
        return Path(self.model_path) if self.model_path else weights.resolve("arcface-r100")

    def describe(self) -> str:
        try:
            return f"insightface ArcFace ONNX ({self._path().name}, onnxruntime)"
        except weights.MissingWeightsError:
            return "insightface ArcFace ONNX (model missing)"

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("onnxruntime") is None:
            return "onnxruntime is not installed; it runs the insightface ArcFace ONNX model"
        try:
            path = self._path()
        except weights.MissingWeightsError as err:
            return str(err)
        if not path.is_file():
            return f"ArcFace model not found: {path}"
        return None

    @staticmethod
    def align(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``[112, 112, 3]`` uint8 crop: least-squares similarity of the 5 points onto the ArcFace template."""
        import cv2
        from skimage.transform import SimilarityTransform

        transform = SimilarityTransform()
        transform.estimate(five_points(landmarks), ARCFACE_TEMPLATE)
        return cv2.warpAffine(np.asarray(image, np.uint8), transform.params[:2], (112, 112), borderValue=0.0)

    def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        if self._session is None:
            import onnxruntime

            self._session = onnxruntime.InferenceSession(str(self._path()), providers=["CPUExecutionProvider"])
        crop = self.align(image, landmarks).astype(np.float32)
        # insightface feeds RGB (it swaps its BGR input) scaled as (x - 127.5) / 127.5, NCHW.
        blob = ((crop - 127.5) / 127.5).transpose(2, 0, 1)[None]
        name = self._session.get_inputs()[0].name
        return np.asarray(self._session.run(None, {name: blob})[0][0], dtype=np.float64)


IDENTITY_BACKENDS: dict[str, type[IdentityBackend]] = {cls.name: cls for cls in (DlibIdentity, ArcFaceIdentity)}


@lru_cache(maxsize=16)
def get_identity_backend(name: str = "dlib", **kwargs: Any) -> IdentityBackend:
    """The identity backend ``name`` (cached per arguments: one loaded network per process)."""
    try:
        cls = IDENTITY_BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown identity backend {name!r}; known: {', '.join(IDENTITY_BACKENDS)}") from None
    return cls(**kwargs)


__all__ = [
    "ARCFACE_TEMPLATE", "IDENTITY_BACKENDS", "ArcFaceIdentity", "DlibIdentity", "IdentityBackend",
    "cosine_similarity", "five_points", "get_identity_backend", "squared_distance",
]
