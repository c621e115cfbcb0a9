"""py-feat action units (the AU detector of the AUH metric in PECHead), from local model files only.

What py-feat 0.6.x does (read from its source, ``feat/detector.py``, ``feat/pretrained.py``,
``feat/au_detectors/StatLearning/SL_test.py``):

* ``feat.Detector()`` builds six models, by default ``face_model="retinaface"``,
  ``landmark_model="mobilefacenet"``, ``au_model="xgb"``, ``emotion_model="resmasknet"``,
  ``facepose_model="img2pose"``, ``identity_model="facenet"``; its constructor calls
  ``feat.pretrained.get_pretrained_models``, which fetches every file listed for those names in
  ``feat/resources/model_list.json`` (GitHub releases ``cosanlab/py-feat`` / ``cosanlab/feat`` v0.1) into
  the package's own ``feat/resources/`` directory, skipping files already there (torchvision
  ``download_url`` with no checksum).
* AUs: RetinaFace boxes -> MobileFaceNet 68 landmarks -> face cropped to the landmark convex hull at 112 px
  -> HOG (8 orientations, 8x8 cells, 2x2 blocks) -> scaler + PCA (``all_data_{Upper,Lower,Full}{scalar,pca}
  _June30.pkl``, by face region) concatenated with the landmarks -> one XGBoost classifier per AU
  (``July4_AU<k>_XGB.ubj``), ``predict_proba[:, 1]``: the probability that the AU is present, for the 20
  units of :data:`PYFEAT_AU_NAMES` (``feat.pretrained.AU_LANDMARK_MAP["Feat"]``).

This backend runs exactly that pipeline through ``Detector.detect_faces`` / ``detect_landmarks`` /
``detect_aus`` on the largest face of each frame and binarises the probabilities at 0.5 (PECHead's AUH).
It never downloads: it is available only when py-feat (and its ``xgboost`` / ``scikit-learn``
dependencies) is importable and **every** file the default ``Detector`` loads is present, and model
fetching is replaced by a check that raises for a missing file. Files are looked up in
``$REENACT_PYFEAT_MODELS`` when set (a directory holding the files named in the unavailable reason, e.g.
copied from another machine's ``site-packages/feat/resources``; py-feat's own lookups are redirected
there), else in the installed package's ``feat/resources``. py-feat >= 0.7 fetches its models from the
HuggingFace hub instead and ships no ``model_list.json``: such versions are reported unavailable.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

import numpy as np

from reenact.face.backend import FaceBackend

#: Environment variable naming a directory that holds py-feat's model files (instead of feat/resources).
PYFEAT_MODELS_ENV = "REENACT_PYFEAT_MODELS"
#: The 20 units of py-feat's ``xgb`` (and ``svm``) AU model, in its output column order.
PYFEAT_AU_NAMES: tuple[str, ...] = (
    "AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12",
    "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43",
)
#: AU probabilities above this are "present" (PECHead binarises py-feat's outputs at 0.5).
PYFEAT_THRESHOLD = 0.5
#: The models of ``feat.Detector()``: (``model_list.json`` section, model name) pairs whose files it loads.
PYFEAT_MODELS: dict[str, tuple[str, str]] = {
    "face_model": ("face_detectors", "retinaface"),
    "landmark_model": ("landmark_detectors", "mobilefacenet"),
    "au_model": ("au_detectors", "xgb"),
    "emotion_model": ("emotion_detectors", "resmasknet"),
    "facepose_model": ("facepose_detectors", "img2pose"),
    "identity_model": ("identity_detectors", "facenet"),
}


def _package_resources() -> Path | None:
    """``feat/resources`` of the installed py-feat, located without importing it (or ``None``)."""
    spec = importlib.util.find_spec("feat")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "resources"


def _version() -> str | None:
    try:
        return importlib.metadata.version("py-feat")
    except importlib.metadata.PackageNotFoundError:
        return None


def required_files(model_list: dict[str, Any]) -> list[str]:
    """File names ``feat.Detector()`` with :data:`PYFEAT_MODELS` loads, from py-feat's ``model_list.json``
    (the xgb/svm AU models also need the six ``hog-pca`` scaler/PCA pickles)."""
    names: list[str] = []
    for section, model in PYFEAT_MODELS.values():
        urls = list(model_list[section][model]["urls"])
        if section == "au_detectors":
            urls += model_list["au_detectors"]["hog-pca"]["urls"]
        names += [url.rsplit("/", 1)[-1] for url in urls]
    return list(dict.fromkeys(names))


class PyFeatAUBackend(FaceBackend):
    """py-feat's ``Detector`` (retinaface + mobilefacenet + xgb): 20 AU probabilities, binarised at 0.5.

    Args:
        model_dir: directory holding the model files; default ``$REENACT_PYFEAT_MODELS``, else the installed
            package's ``feat/resources``.
        device: torch device of the face and landmark networks.
    """

    name: ClassVar[str] = "py-feat"
    au_names: ClassVar[tuple[str, ...]] = PYFEAT_AU_NAMES
    _lazy_attributes: ClassVar[tuple[str, ...]] = ("_detector",)

    def __init__(self, model_dir: str | None = None, device: str = "cpu") -> None:
        self.model_dir = model_dir or os.environ.get(PYFEAT_MODELS_ENV) or None
        self.device = device
        self._detector: Any = None

    # ------------------------------------------------------------------ availability
    def _directory(self) -> Path | None:
        return Path(self.model_dir) if self.model_dir else _package_resources()

    def missing_files(self) -> list[str]:
        """Model files the detector needs that are not in the model directory (needs py-feat installed)."""
        resources = _package_resources()
        if resources is None:
            raise RuntimeError("py-feat is not installed")
        model_list = resources / "model_list.json"
        if not model_list.is_file():
            raise RuntimeError(f"py-feat {_version()} has no {model_list} (py-feat >= 0.7 fetches its models "
                               "from the HuggingFace hub); this backend supports py-feat 0.6.x")
        directory = self._directory()
        assert directory is not None
        files = required_files(json.loads(model_list.read_text()))
        return [name for name in files if not (directory / name).is_file()]

    def unavailable_reason(self) -> str | None:
        if importlib.util.find_spec("feat") is None:
            return (f"py-feat is not installed (pip install py-feat==0.6.2, then place its model files in "
                    f"site-packages/feat/resources or in ${PYFEAT_MODELS_ENV}; nothing is downloaded)")
        for module, package in (("xgboost", "xgboost"), ("sklearn", "scikit-learn"), ("skimage", "scikit-image")):
            if importlib.util.find_spec(module) is None:
                return f"py-feat needs {package}, which is not installed"
        try:
            missing = self.missing_files()
        except RuntimeError as error:
            return str(error)
        if missing:
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            return (f"py-feat model files missing from {self._directory()}: {shown} (files of py-feat's "
                    f"model_list.json releases; place them there or set ${PYFEAT_MODELS_ENV} to a directory "
                    "holding them; nothing is downloaded)")
        return None

    def describe(self) -> str:
        version = _version() or "not installed"
        models = ", ".join(f"{key}={model}" for key, (_, model) in PYFEAT_MODELS.items() if key in (
            "face_model", "landmark_model", "au_model"))
        return (f"py-feat {version} Detector ({models}), {len(self.au_names)} AUs binarised at "
                f"{PYFEAT_THRESHOLD}")

    # ------------------------------------------------------------------ loading
    @contextlib.contextmanager
    def _local_files(self) -> Iterator[None]:
        """Make py-feat read from the model directory and turn any download into an error."""
        directory = str(self._directory())

        def no_download(url: str, root: str, *args: Any, **kwargs: Any) -> None:
            path = Path(root) / url.rsplit("/", 1)[-1]
            if not path.is_file():
                raise FileNotFoundError(f"py-feat model file {path} is missing and reenact never downloads "
                                        f"(set ${PYFEAT_MODELS_ENV} to a directory holding it)")

        with contextlib.ExitStack() as stack:
            import feat.pretrained

            stack.enter_context(mock.patch.object(feat.pretrained, "download_url", no_download))
            if self.model_dir:
                # Every py-feat module did ``from feat.utils.io import get_resource_path``: patch each binding.
                for name, module in list(sys.modules.items()):
                    if (name == "feat" or name.startswith("feat.")) and hasattr(module, "get_resource_path"):
                        stack.enter_context(mock.patch.object(module, "get_resource_path", lambda: directory))
            yield

    def _load(self) -> Any:
        reason = self.unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        import feat.pretrained  # noqa: F401  (imports every detector module before patching)
        from feat import Detector

        with self._local_files():
            return Detector(**{key: model for key, (_, model) in PYFEAT_MODELS.items()}, device=self.device)

    # ------------------------------------------------------------------ inference
    def probabilities(self, frames: np.ndarray) -> np.ndarray:
        """``[N, H, W, 3]`` uint8 RGB -> ``[N, 20]`` AU probabilities of the largest face (NaN row: no face)."""
        import torch

        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected [N, H, W, 3] uint8 RGB frames, got {frames.shape} {frames.dtype}")
        if self._detector is None:
            self._detector = self._load()
        out = np.full((len(frames), len(self.au_names)), np.nan)
        with self._local_files(), torch.no_grad():
            for index, frame in enumerate(frames):
                # A [1, 3, H, W] uint8 RGB tensor, what feat.data.ImageDataset feeds detect_image.
                image = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)[None]
                faces = self._detector.detect_faces(image, threshold=0.5)
                if not faces or not faces[0]:
                    continue
                largest = int(np.argmax([(f[2] - f[0]) * (f[3] - f[1]) for f in faces[0]]))
                faces = [[faces[0][largest]]]
                landmarks = self._detector.detect_landmarks(image, detected_faces=faces)
                aus = self._detector.detect_aus(image, landmarks)
                out[index] = np.asarray(aus[0], dtype=np.float64).reshape(-1, len(self.au_names))[0]
        return out

    def action_units(self, frames: np.ndarray) -> np.ndarray:
        """``[N, H, W, 3]`` uint8 RGB -> ``[N, 20]`` bool, probability > 0.5 (all False where no face).

        Use :meth:`probabilities` to tell a frame without a face (NaN row) from one without AUs.
        """
        probabilities = self.probabilities(frames)
        return np.nan_to_num(probabilities, nan=0.0) > PYFEAT_THRESHOLD


__all__ = ["PYFEAT_AU_NAMES", "PYFEAT_MODELS", "PYFEAT_MODELS_ENV", "PYFEAT_THRESHOLD", "PyFeatAUBackend",
           "required_files"]
