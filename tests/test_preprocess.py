"""`reenact preprocess`: detect, crop, resize and annotate raw videos and images into the FOMM layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reenact.cli import main
from reenact.data import check_dataset
from reenact.data.discovery import discover
from reenact.data.preprocess import (
    InputFile,
    NoFaceError,
    assign_test_identities,
    crop_frame,
    crop_image,
    find_inputs,
    split_segments,
    square_crop_box,
)
from reenact.data.synthetic import render_video
from reenact.data.video import read_video, write_video

SIZE = 96
CANVAS = (4, 240, 320, 3)  # [T, H, W, 3]; the 128 px face video is pasted off-centre into it


def _off_centre_video(path: Path, identity: int, offset: tuple[int, int]) -> np.ndarray:
    """Write a synthetic 128 px clip pasted at ``offset`` (x, y) into a black 320x240 canvas; returns the true
    landmarks ``[T, 68, 2]`` in canvas pixels."""
    frames, truth = render_video(identity, 0, frames=CANVAS[0], size=128, seed=5)
    canvas = np.zeros(CANVAS, np.uint8)
    x, y = offset
    canvas[:, y:y + 128, x:x + 128] = frames
    write_video(path, canvas)
    return truth["landmarks"] + np.array(offset, dtype=np.float32)


# ---------------------------------------------------------------------------------------- geometry
def test_square_crop_box_and_edge_replication() -> None:
    box = square_crop_box(np.array([[10.0, 20.0, 30.0, 60.0], [12.0, 22.0, 34.0, 58.0]]), increase=0.1)
    left, top, right, bottom = box
    assert right - left == bottom - top == 48  # 1.2 * max(24, 40) around the union's centre (22, 40)
    assert (left + right) / 2 == pytest.approx(22, abs=1) and (top + bottom) / 2 == pytest.approx(40, abs=1)
    frame = np.arange(5 * 6 * 3, dtype=np.uint8).reshape(5, 6, 3)
    cropped = crop_frame(frame, (-2, -2, 4, 4), size=6)  # leaves the top-left corner: replicated edges
    assert cropped.shape == (6, 6, 3)
    assert (cropped[:3, :3] == frame[0, 0]).all()
    assert (crop_frame(frame, (1, 1, 4, 4), size=3) == frame[1:4, 1:4]).all()  # inside and same size: exact


def test_split_segments_on_face_jumps() -> None:
    left, right = np.array([0.0, 0, 10, 10]), np.array([50.0, 0, 60, 10])
    detections = [(0, None), (1, left), (2, left + 1), (3, right), (4, None), (5, right)]
    segments, dropped = split_segments(detections, 6, iou_threshold=0.25)
    assert [(s.start, s.end, len(s.boxes)) for s in segments] == [(0, 3, 2), (3, 6, 2)] and dropped == 0
    one, _ = split_segments(detections, 6, iou_threshold=0.0)
    assert [(s.start, s.end) for s in one] == [(0, 6)]
    short, dropped = split_segments([(0, left), (5, right)], 6, iou_threshold=0.25, min_frames=2)
    assert [(s.start, s.end) for s in short] == [(0, 5)] and dropped == 1
    assert split_segments([(0, None)], 3, 0.25) == ([], 0)


def test_find_inputs_names_and_splits(tmp_path: Path) -> None:
    for name in ("train/id1/a.mp4", "test/id2/b.mp4", "loose.mp4", "deep/x/y/c.mp4", "still.jpg", ".hidden.mp4",
                 "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    found = {(item.split, item.name, item.kind) for item in find_inputs(tmp_path)}
    assert found == {("train", "id1#a", "video"), ("test", "id2#b", "video"), ("train", "loose", "video"),
                     ("train", "deep#x_y_c", "video"), ("train", "still", "image")}
    assert {item.split for item in find_inputs(tmp_path, "test")} == {"test"}


def test_missing_or_unusable_input_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "raw"
    with pytest.raises(SystemExit, match="nowhere/raw"):
        main(["preprocess", str(missing), str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()  # nothing was written before failing
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(SystemExit, match=r"notes\.txt.*unsupported"):
        main(["preprocess", str(tmp_path / "notes.txt"), str(tmp_path / "out")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit, match="empty.*no video or image"):
        main(["preprocess", str(tmp_path / "empty"), str(tmp_path / "out")])


# ------------------------------------------------------------------------------------- with dlib
def test_preprocess_videos_to_a_checked_dataset(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("dlib")
    raw, out = tmp_path / "in", tmp_path / "out"
    truths = {
        "train": _off_centre_video(raw / "train" / "id0000" / "clip00.mp4", 0, (170, 90)),
        "test": _off_centre_video(raw / "test" / "id0003" / "clip00.mp4", 3, (10, 100)),
    }
    write_video(raw / "train" / "grey.mp4", np.full((3, 64, 64, 3), 128, np.uint8))
    (raw / "train" / "broken.mp4").write_bytes(b"not a video at all" * 20)
    assert main(["preprocess", str(raw), str(out), "--size", str(SIZE)]) == 0
    printed = capsys.readouterr().out
    assert "grey.mp4" in printed and "broken.mp4" in printed and "no-face" in printed

    report = check_dataset(out, require_annotations=True, image_size=SIZE)
    assert report.ok, [problem.message for problem in report.problems]
    data = json.loads((out / "preprocess.json").read_text())
    assert data["counts"] == {"processed": 2, "skipped-existing": 0, "no-face": 1, "too-short": 0, "unreadable": 1}
    status = {Path(record["input"]).name: record for record in data["inputs"]}
    assert status["grey.mp4"]["status"] == "no-face" and status["grey.mp4"]["outputs"] == []
    assert status["broken.mp4"]["status"] == "unreadable" and "broken.mp4" in status["broken.mp4"]["message"]

    for split, truth in truths.items():
        (record,) = discover(out, split)
        assert record.name == ("id0000#clip00" if split == "train" else "id0003#clip00")
        frames = read_video(record.path)
        assert frames.shape == (CANVAS[0], SIZE, SIZE, 3)
        with np.load(out / "annotations" / split / f"{record.name}.npz") as annotation:
            landmarks, pose, detected = annotation["landmarks"], annotation["pose"], annotation["detected"]
        assert landmarks.shape == (CANVAS[0], 68, 2) and pose.shape == (CANVAS[0], 3) and detected.all()
        assert (landmarks >= 0).all() and (landmarks < SIZE).all()
        extent = (landmarks.max(axis=1) - landmarks.min(axis=1)).max(axis=1)
        assert (extent > 0.5 * SIZE).all()  # the face fills the crop (it spans 44 of 320 px before cropping)
        # The crop box maps the true canvas landmarks onto the detected ones in the output frames.
        (output,) = next(r for r in data["inputs"] if r["outputs"] and r["split"] == split)["outputs"]
        left, top, right, bottom = output["crop_box"]
        assert right - left == bottom - top and not output["padded"]
        mapped = (truth - np.array([left, top]) + 0.5) * SIZE / (right - left) - 0.5
        assert np.linalg.norm(landmarks - mapped, axis=-1).mean() < 4.0
        # The face stays where the source put it: the crop is off-centre in the canvas, around the face.
        assert left <= truth[..., 0].min() and truth[..., 0].max() < right


def test_preprocess_resumes_and_overwrites(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    raw, out = tmp_path / "raw", tmp_path / "out"
    _off_centre_video(raw / "alice.mp4", 1, (150, 60))
    write_video(raw / "grey.mp4", np.full((2, 64, 64, 3), 90, np.uint8))
    arguments = ["preprocess", str(raw), str(out), "--size", "64", "--format", "png"]

    def statuses() -> dict[str, str]:
        data = json.loads((out / "preprocess.json").read_text())
        return {Path(record["input"]).name: record["status"] for record in data["inputs"]}

    assert main(arguments) == 0
    assert statuses() == {"alice.mp4": "processed", "grey.mp4": "no-face"}
    annotation = out / "annotations" / "train" / "alice.npz"
    assert len(list((out / "train" / "alice").glob("*.png"))) == CANVAS[0]
    stamp = annotation.stat().st_mtime_ns
    assert main(arguments) == 0
    assert statuses() == {"alice.mp4": "skipped-existing", "grey.mp4": "no-face"}
    assert annotation.stat().st_mtime_ns == stamp
    data = json.loads((out / "preprocess.json").read_text())
    assert data["inputs"][0]["outputs"][0]["crop_box"]  # an earlier run's crop box is kept for skipped inputs
    # An output without its annotation (an interrupted run) is redone.
    annotation.unlink()
    assert main(arguments) == 0
    assert statuses()["alice.mp4"] == "processed" and annotation.is_file()
    stamp = annotation.stat().st_mtime_ns
    assert main([*arguments, "--overwrite"]) == 0
    assert statuses()["alice.mp4"] == "processed" and annotation.stat().st_mtime_ns != stamp
    assert check_dataset(out, splits=["train"], require_annotations=True).ok

    # Interrupted after its first input, a run keeps the earlier run's records of the inputs it did not reach.
    from reenact.data.preprocess import PreprocessConfig, preprocess

    def interrupt(item: object, result: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        preprocess(raw, out, PreprocessConfig(size=64, video_format="png", overwrite=True), on_input=interrupt)
    assert set(statuses()) == {"alice.mp4", "grey.mp4"}


def test_preprocess_fails_when_nothing_is_usable_and_never_writes_one_frame_clips(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    raw, out = tmp_path / "raw", tmp_path / "out"
    write_video(raw / "grey.mp4", np.full((3, 64, 64, 3), 90, np.uint8))
    frames, _ = render_video(2, 0, frames=1, size=128, seed=5)
    write_video(raw / "still.mp4", frames)  # one frame with a face: not a clip
    assert main(["preprocess", str(raw), str(out), "--size", "64"]) == 1  # was 0 with nothing written
    data = json.loads((out / "preprocess.json").read_text())
    status = {Path(record["input"]).name: record for record in data["inputs"]}
    assert status["still.mp4"]["status"] == "too-short" and "at least 2" in status["still.mp4"]["message"]
    assert not list((out / "train").glob("*")) if (out / "train").exists() else True


def test_preprocess_refuses_to_mix_output_settings(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    raw, out = tmp_path / "raw", tmp_path / "out"
    _off_centre_video(raw / "alice.mp4", 1, (150, 60))
    assert main(["preprocess", str(raw), str(out), "--size", "64"]) == 0
    recorded = (out / "preprocess.json").read_text()
    # A re-run with another size used to "skip" the 64 px outputs and record size 48.
    with pytest.raises(SystemExit, match="size: 64 there, 48 now"):
        main(["preprocess", str(raw), str(out), "--size", "48"])
    assert (out / "preprocess.json").read_text() == recorded
    assert main(["preprocess", str(raw), str(out), "--size", "48", "--overwrite"]) == 0
    assert read_video(out / "train" / "alice.mp4").shape[1:3] == (48, 48)


def test_test_fraction_splits_by_identity(tmp_path: Path) -> None:
    inputs = [InputFile(tmp_path / f"{person}/{clip}.mp4", "video", "train", f"{person}#{clip}")
              for person in ("ann", "bob", "cat", "dan", "eve") for clip in ("a", "b")]
    inputs.append(InputFile(tmp_path / "face.png", "image", "train", "face"))
    split = assign_test_identities(inputs, 0.4)
    test_ids = {item.name.split("#")[0] for item in split if item.split == "test"}
    train_ids = {item.name.split("#")[0] for item in split if item.split == "train" and item.kind == "video"}
    assert len(test_ids) == 2 and not test_ids & train_ids and len(train_ids) == 3
    assert sum(item.split == "test" for item in split) == 4  # both clips of each test identity
    assert assign_test_identities(inputs, 0.4) == split  # a re-run picks the same identities
    assert next(item for item in split if item.kind == "image").split == "train"
    with pytest.raises(ValueError, match="at least 2 identities"):
        assign_test_identities(inputs[:2], 0.5)


def test_single_image_crop(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    from skimage import data as skimage_data

    astronaut = skimage_data.astronaut()  # 512 x 512, face around x 180-270, y 90-180
    cropped = crop_image(astronaut, size=SIZE)
    assert cropped.shape == (SIZE, SIZE, 3) and cropped.dtype == np.uint8
    with pytest.raises(NoFaceError, match="no face"):
        crop_image(np.full((120, 160, 3), 128, np.uint8), size=SIZE)

    source = tmp_path / "face.jpg"
    Image.fromarray(astronaut).save(source, quality=95)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(grey)
    out = tmp_path / "out"
    assert main(["preprocess", str(source), str(out), "--size", str(SIZE)]) == 0
    png = out / "images" / "face.png"
    with Image.open(png) as image:
        assert image.size == (SIZE, SIZE) and image.mode == "RGB"
        stored = np.asarray(image)
    assert np.abs(stored.astype(int) - cropped.astype(int)).mean() < 3  # JPEG round trip only
    with np.load(out / "annotations" / "images" / "face.npz") as annotation:
        assert annotation["landmarks"].shape == (1, 68, 2) and annotation["detected"].tolist() == [1]
        extent = annotation["landmarks"][0].max(0) - annotation["landmarks"][0].min(0)
    assert extent.max() > 0.5 * SIZE  # 90 of 512 px before cropping
    record = json.loads((out / "preprocess.json").read_text())["inputs"][0]
    assert record["status"] == "processed" and record["outputs"][0]["path"] == "images/face.png"
    # An image without a face is reported, not raised; a run whose every input failed exits with status 1.
    assert main(["preprocess", str(grey), str(out), "--size", str(SIZE)]) == 1
    records = {Path(r["input"]).name: r for r in json.loads((out / "preprocess.json").read_text())["inputs"]}
    assert records["grey.png"]["status"] == "no-face" and not (out / "images" / "grey.png").exists()
    # The file describes everything in OUT: the earlier run's face.jpg stays listed.
    assert records["face.jpg"]["status"] == "processed"


def test_help_lists_the_options(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--size", "--split", "--increase", "--iou_threshold", "--overwrite", "--format", "--stride"):
        assert option in text
    assert main(["--help"]) == 0 and "preprocess" in capsys.readouterr().out


def test_predict_crop_source_uses_the_same_crop(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    from skimage import data as skimage_data

    astronaut = skimage_data.astronaut()
    source, driving, out = tmp_path / "face.png", tmp_path / "driving.mp4", tmp_path / "out.mp4"
    Image.fromarray(astronaut).save(source)
    write_video(driving, np.full((2, 64, 64, 3), 100, np.uint8))
    assert main(["predict", "--model", "copy-source", "--source", str(source), "--driving", str(driving),
                 "--out", str(out), "--crop-source"]) == 0
    size = json.loads(out.with_suffix(".mp4.json").read_text())["size"]
    generated = read_video(out)[0].astype(int)
    expected = crop_image(astronaut, size=size).astype(int)
    uncropped = np.asarray(Image.fromarray(astronaut).resize((size, size), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(generated - expected).mean() < 8 < np.abs(generated - uncropped).mean()
