"""The synthetic talking-head generator: determinism, ranges, layout, ground truth, dlib detectability."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from reenact.data import check_dataset, discover
from reenact.data.synthetic import (
    ANNOTATION_KEYS,
    GENERATOR_VERSION,
    POSE_LIMITS,
    SCALE_RANGE,
    TRANSLATION_LIMIT,
    default_dataset_root,
    dlib_detection_rate,
    ensure_default_dataset,
    face_model,
    generate_dataset,
    render_video,
    sample_identity,
    sample_trajectory,
)
from reenact.data.video import read_video
from reenact.face.model3d import to_pixels


def test_render_is_deterministic_per_seed() -> None:
    first, truth_a = render_video(3, 1, frames=4, size=64, seed=11)
    second, truth_b = render_video(3, 1, frames=4, size=64, seed=11)
    other, truth_c = render_video(3, 1, frames=4, size=64, seed=12)
    assert first.dtype == np.uint8 and first.shape == (4, 64, 64, 3)
    assert first.tobytes() == second.tobytes()
    assert set(truth_a) == set(ANNOTATION_KEYS)
    for key in truth_a:
        assert truth_a[key].tobytes() == truth_b[key].tobytes(), key
    assert not np.array_equal(first, other)
    assert not np.array_equal(truth_a["landmarks"], truth_c["landmarks"])
    # Identities are not tied to a clip: another clip of the same person has the same coefficients.
    _, clip0 = render_video(3, 0, frames=2, size=32, seed=11)
    assert np.array_equal(clip0["identity_coeffs"], truth_a["identity_coeffs"])


def test_identities_differ_and_trajectories_stay_in_range() -> None:
    a, b = sample_identity(0, 1), sample_identity(0, 2)
    assert a.name == "id0001" and b.name == "id0002" and not np.allclose(a.coeffs, b.coeffs)
    assert len({sample_identity(0, i).hair_style for i in range(40)}) >= 4
    trajectories = [sample_trajectory(0, i, c, 64) for i in range(30) for c in range(2)]
    poses = np.concatenate([t["pose"] for t in trajectories])
    for axis, limit in enumerate(POSE_LIMITS):
        assert np.abs(poses[:, axis]).max() <= limit + 1e-4
        assert np.abs(poses[:, axis]).max() > 0.8 * limit  # the whole range is used
        assert poses[:, axis].min() < 0 < poses[:, axis].max()
    for trajectory in trajectories:
        assert np.abs(trajectory["translation"]).max() <= TRANSLATION_LIMIT + 1e-6
        assert SCALE_RANGE[0] - 1e-6 <= trajectory["scale"].min() <= trajectory["scale"].max() <= SCALE_RANGE[1] + 1e-6
        assert trajectory["expression"].min() >= 0 and trajectory["expression"].max() <= 1
        assert trajectory["pose"].dtype == np.float32
        # Smooth motion: no frame-to-frame jump larger than a few degrees at 25 fps.
        assert np.abs(np.diff(trajectory["pose"], axis=0)).max() < 4.0
        # ... and real motion within one 64-frame clip: a head turn of at least 25 degrees, and a nod.
        assert np.ptp(trajectory["pose"][:, 0]) > 25.0
        assert np.ptp(trajectory["pose"][:, 1]) > 6.0
    names = face_model().expression_names
    expressions = np.stack([t["expression"] for t in trajectories])
    assert expressions[..., names.index("jaw_open")].max(axis=1).min() > 0.1  # every clip talks
    assert (expressions[..., names.index("blink_left")].max(axis=1) > 0.9).sum() >= 10  # blinks happen
    # The same clip with more frames starts with the same head motion.
    assert np.array_equal(sample_trajectory(0, 4, 1, 64)["pose"][:10], sample_trajectory(0, 4, 1, 10)["pose"])


def test_ground_truth_is_the_model_projection_and_marks_the_drawn_face() -> None:
    video, truth = render_video(5, 0, frames=6, size=128, seed=0)
    landmarks = truth["landmarks"]
    assert landmarks.shape == (6, 68, 2) and landmarks.dtype == np.float32
    assert landmarks.min() > 0 and landmarks.max() < 127
    assert truth["identity"].item() == "id0005" and truth["expression"].shape == (6, face_model().expression_dim)
    # The stored camera and coefficients reproduce the stored landmarks exactly.
    model = face_model()
    as64 = {key: torch.from_numpy(truth[key]).double() for key in ANNOTATION_KEYS if key != "identity"}
    points = model.landmarks_3d(as64["identity_coeffs"], as64["expression"])
    projected = to_pixels(model.project(points, as64["pose"], as64["translation"], as64["scale"]), 128)
    assert np.abs(projected.numpy() - landmarks).max() < 1e-3
    for frame, points2d in zip(video.astype(float), landmarks, strict=True):
        corners = np.stack([frame[1, 1], frame[1, -2], frame[0, 64]])
        for index in (30, 8, 33, 27, 51):  # nose, chin, philtrum, nasion, upper lip: never background
            x, y = np.round(points2d[index]).astype(int)
            assert np.abs(frame[y, x] - corners).sum(axis=1).min() > 20, index
        # The eyes are darker than the skin between them (brows, lashes, irises).
        x, y = np.round(points2d[36:42].mean(0)).astype(int)
        bx, by = np.round(points2d[27]).astype(int)
        assert frame[y - 1 : y + 2, x - 1 : x + 2].mean() < frame[by - 1 : by + 2, bx - 1 : bx + 2].mean()


def test_generate_dataset_layout_and_ground_truth(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "data", videos=8, frames=5, size=48, seed=2, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["generator_version"] == GENERATOR_VERSION and meta["seed"] == 2
    assert meta["args"]["videos"] == 8 and meta["expression_names"] == list(face_model().expression_names)
    assert meta["counts"] == {"train": 4, "test": 4, "train_identities": 2, "test_identities": 2, "frames_per_video": 5}
    assert "rotation" in meta["conventions"] and "landmarks" in meta["conventions"]
    assert sorted(p.name for p in (root / "train").iterdir()) == [
        "id0000#clip00.mp4", "id0000#clip01.mp4", "id0001#clip00.mp4", "id0001#clip01.mp4",
    ]
    train, test = discover(root, "train"), discover(root, "test")
    assert len(train) + len(test) == 8
    assert not {r.identity for r in train} & {r.identity for r in test}
    for record in train + test:
        assert record.annotation == root / "annotations" / record.split / f"{record.name}.npz"
        with np.load(record.annotation) as truth:
            assert sorted(truth.files) == sorted(ANNOTATION_KEYS)
            assert truth["landmarks"].shape == (5, 68, 2) and truth["landmarks"].dtype == np.float32
            assert truth["pose"].shape == (5, 3) and truth["scale"].shape == (5,)
            assert truth["translation"].shape == (5, 2) and truth["expression"].shape == (5, 7)
            assert truth["identity_coeffs"].shape == (face_model().identity_dim,)
            assert truth["identity"].shape == () and str(truth["identity"]) == record.identity
    assert read_video(test[0].path).shape == (5, 48, 48, 3)
    report = check_dataset(root, require_annotations=True)
    assert report.ok and not report.warnings
    assert (root / "annotations" / "README.md").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    with pytest.raises(FileExistsError):
        generate_dataset(root, videos=2, frames=2, size=32, progress=False)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path / "bad", videos=2, frames=2, size=32, video_format="gif", progress=False)


def test_png_variant_matches_render_video(tmp_path: Path) -> None:
    png = generate_dataset(tmp_path / "png", videos=4, frames=3, size=32, seed=4, video_format="png",
                           progress=False)
    records = discover(png, "train") + discover(png, "test")
    assert all(r.path.is_dir() and r.annotation is not None for r in records)
    assert sorted(p.name for p in records[0].path.iterdir()) == ["0000.png", "0001.png", "0002.png"]
    rendered, truth = render_video(0, 0, frames=3, size=32, seed=4)
    assert np.array_equal(read_video(records[0].path), rendered)  # PNG is lossless
    with np.load(png / "annotations" / "train" / "id0000#clip00.npz") as stored:
        assert np.array_equal(stored["landmarks"], truth["landmarks"])


@pytest.mark.slow
def test_worker_processes_write_the_same_dataset(tmp_path: Path) -> None:
    serial = generate_dataset(tmp_path / "serial", videos=4, frames=2, size=32, seed=9, video_format="png",
                              progress=False, workers=1)
    parallel = generate_dataset(tmp_path / "parallel", videos=4, frames=2, size=32, seed=9, video_format="png",
                                progress=False, workers=2)
    files = sorted(p.relative_to(serial) for p in serial.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(parallel) for p in parallel.rglob("*") if p.is_file())
    for name in files:
        assert (serial / name).read_bytes() == (parallel / name).read_bytes(), name


def test_default_dataset_is_built_once_even_when_asked_concurrently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reenact.data.synthetic as synthetic

    monkeypatch.setenv("REENACT_CACHE", str(tmp_path))
    monkeypatch.setitem(synthetic.DEFAULT_ARGS, "videos", 4)
    monkeypatch.setitem(synthetic.DEFAULT_ARGS, "frames", 3)
    monkeypatch.setitem(synthetic.DEFAULT_ARGS, "size", 32)
    builds = []
    original = synthetic.generate_dataset

    def counting(*args, **kwargs):
        builds.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(synthetic.dataset, "generate_dataset", counting)
    roots: list[Path] = []
    threads = [threading.Thread(target=lambda: roots.append(ensure_default_dataset(progress=False))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    root = default_dataset_root()
    assert roots == [root] * 3 and len(builds) == 1
    assert root.is_relative_to(tmp_path / "synthetic") and (root / "meta.json").is_file()
    stamp = (root / "meta.json").stat().st_mtime_ns
    assert ensure_default_dataset(progress=False) == root and len(builds) == 1
    assert (root / "meta.json").stat().st_mtime_ns == stamp


def test_dlib_finds_the_synthetic_faces() -> None:
    pytest.importorskip("dlib")
    # 40 frames at 256 px: the first and last frame of 4-frame clips of 20 identities, whose base poses
    # spread over the whole pose range. The full measurement (>= 95% required) is in the module docstring.
    frames = np.concatenate([render_video(300 + i, 0, frames=4, size=256, seed=1)[0][[0, 3]] for i in range(20)])
    assert dlib_detection_rate(frames) >= 0.9
