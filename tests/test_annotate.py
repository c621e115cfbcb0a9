"""`reenact data annotate`: landmarks and head pose for datasets without ground truth."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reenact.cli import main
from reenact.data import check_dataset
from reenact.data.annotate import fill_missing
from reenact.data.synthetic import generate_dataset
from reenact.data.video import write_video


def test_fill_missing_takes_the_nearest_detection() -> None:
    a, b = np.zeros((68, 2)), np.ones((68, 2))
    dense, detected = fill_missing([None, a, None, None, b])
    assert detected.tolist() == [0, 1, 0, 0, 1]
    assert [float(frame[0, 0]) for frame in dense] == [0, 0, 0, 1, 1]
    assert fill_missing([None, None]) is None


def test_annotate_synthetic_videos_against_ground_truth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("dlib")
    root = generate_dataset(tmp_path / "data", videos=4, frames=4, size=128, seed=9, progress=False)
    truth_dir = tmp_path / "truth"
    shutil.move(root / "annotations", truth_dir)
    write_video(root / "train" / "blank#clip00.mp4", np.zeros((4, 128, 128, 3), np.uint8))
    summary_path = tmp_path / "summary.json"
    assert main(["data", "annotate", str(root), "--json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    assert summary["no_face"] == ["blank#clip00"] and len(summary["written"]) == 4
    for name in summary["written"]:
        split = "train" if (root / "train" / f"{name}.mp4").exists() else "test"
        with np.load(root / "annotations" / split / f"{name}.npz") as found, \
                np.load(truth_dir / split / f"{name}.npz") as truth:
            assert found["landmarks"].shape == (4, 68, 2) and found["detected"].all()
            # dlib at 128 px against the exact landmarks: a few pixels (2.5 px measured at 256 px).
            assert np.linalg.norm(found["landmarks"] - truth["landmarks"], axis=-1).mean() < 4.0
            assert np.abs(found["pose"] - truth["pose"]).mean() < 8.0
    assert "no face in any frame of blank#clip00" in capsys.readouterr().out
    # Resumable: a second run keeps what exists.
    assert main(["data", "annotate", str(root), "--json", str(summary_path)]) == 0
    assert len(json.loads(summary_path.read_text())["kept"]) == 4
    (root / "train" / "blank#clip00.mp4").unlink()
    report = check_dataset(root, require_annotations=True)
    assert report.ok, [p.message for p in report.problems]


def test_annotate_unknown_backend_is_a_clear_error(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path / "d", videos=2, frames=2, size=32, seed=1, progress=False)
    with pytest.raises(SystemExit, match="unknown|nope"):
        main(["data", "annotate", str(root), "--backend", "nope"])
