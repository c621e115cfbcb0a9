"""``reenact predict`` as practitioners use FOMM's and LivePortrait's demos: one flag style, ``--adapt_scale``,
face crops of the source and the driving video, paste-back into the source image, and the driving audio kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reenact.argparsing import normalise_flags
from reenact.cli import main
from reenact.data.video import audio_stream_info, read_video, write_video
from reenact.registry import create_model, save_checkpoint


def _checkpoint(name: str, directory: Path, **overrides: object) -> Path:
    return save_checkpoint(create_model(name, preset="tiny", **overrides), directory / f"{name}.ckpt")


def _face_frames(synthetic_root: Path, count: int = 6) -> np.ndarray:
    """``[T, 64, 64, 3]`` frames of one synthetic test clip (faces dlib finds once upscaled)."""
    video = sorted((synthetic_root / "test").iterdir())[0]
    return read_video(video, max_frames=count)


def _on_canvas(frames: np.ndarray, canvas: tuple[int, int], offset: tuple[int, int], face_size: int = 256
               ) -> np.ndarray:
    """Frames upscaled to ``face_size`` and placed at ``offset = (x, y)`` on a ``canvas = (width, height)``
    gray picture: a wild frame in which the face is small and off-centre."""
    width, height = canvas
    out = np.full((len(frames), height, width, 3), 90, np.uint8)
    x, y = offset
    for index, frame in enumerate(frames):
        big = np.asarray(Image.fromarray(frame).resize((face_size, face_size), Image.Resampling.BICUBIC))
        out[index, y:y + face_size, x:x + face_size] = big
    return out


def _video_with_audio(path: Path, frames: np.ndarray, fps: int = 5, seconds: float = 3.0) -> Path:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for frame in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(16000 * seconds)) / 16000)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            chunk = av.AudioFrame.from_ndarray(tone[None, start:start + 1024], format="flt", layout="mono")
            chunk.sample_rate = 16000
            for packet in audio.encode(chunk):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
    return path


# ------------------------------------------------------------------------------------------ flag style
def test_dashed_and_underscore_flags_are_the_same_option(synthetic_root: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert normalise_flags(["--max-frames", "3", "--find-best-frame", "-o", "a-b.mp4", "--x-y=1", "--", "--k-v"]) == [
        "--max_frames", "3", "--find_best_frame", "-o", "a-b.mp4", "--x_y=1", "--", "--k-v"]
    video = str(sorted((synthetic_root / "test").iterdir())[0])
    for flag, out in (("--max-frames", "dash.mp4"), ("--max_frames", "underscore.mp4")):
        assert main(["predict", "--model", "copy-source", "-s", video, "-d", video, flag, "3",
                     "-o", str(tmp_path / out)]) == 0
        assert read_video(tmp_path / out).shape[0] == 3
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    shown = capsys.readouterr().out
    assert "--max_frames" in shown and "--max-frames" not in shown and "--crop_driving" in shown


def test_edit_refuses_preset_and_names_expression_preset(synthetic_root: Path, tmp_path: Path) -> None:
    image = str(sorted((synthetic_root / "test").iterdir())[0])
    checkpoint = _checkpoint("lpmm", tmp_path)
    with pytest.raises(SystemExit, match="use --expression_preset surprise"):
        main(["edit", "--ckpt", str(checkpoint), "-s", image, "--preset", "surprise", "-o", str(tmp_path / "e.png")])
    assert not (tmp_path / "e.png").exists()


# ------------------------------------------------------------------------------------------ adapt_scale
def test_adapt_scale_reaches_the_keypoint_model(synthetic_root: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import reenact.models.keypoint_warp.torch_model as keypoint_model

    video = str(sorted((synthetic_root / "test").iterdir())[0])
    checkpoint = _checkpoint("keypoint-warp", tmp_path)
    # A smaller source face than the driving one: the convex-hull ratio differs from 1, so scaling changes motion.
    frames = _face_frames(synthetic_root, 1)[0]
    small = np.full_like(frames, int(frames[0, 0].mean()))
    small[16:48, 16:48] = np.asarray(Image.fromarray(frames).resize((32, 32)))
    Image.fromarray(small).save(tmp_path / "small.png")
    seen: list[bool] = []
    relative_keypoints = keypoint_model.relative_keypoints

    def spy(*args: object, adapt_scale: bool = False, **kwargs: object) -> object:
        seen.append(adapt_scale)
        return relative_keypoints(*args, adapt_scale=adapt_scale, **kwargs)

    monkeypatch.setattr(keypoint_model, "relative_keypoints", spy)
    outputs = {}
    for flag in ("--adapt_scale", "--no_adapt_scale"):
        seen.clear()
        out = tmp_path / f"{flag.strip('-')}.mp4"
        assert main(["predict", "--ckpt_path", str(checkpoint), "-s", str(tmp_path / "small.png"), "-d", video,
                     "--relative", flag, "--max_frames", "4", "-o", str(out)]) == 0
        assert seen == [flag == "--adapt_scale"] * 4
        assert json.loads(Path(f"{out}.json").read_text())["adapt_scale"] is (flag == "--adapt_scale")
        outputs[flag] = read_video(out).astype(np.float32)
    assert np.abs(outputs["--adapt_scale"] - outputs["--no_adapt_scale"]).max() > 0

    with pytest.raises(SystemExit, match="add --relative"):
        main(["predict", "--ckpt_path", str(checkpoint), "-s", video, "-d", video, "--adapt_scale",
              "-o", str(tmp_path / "x.mp4")])
    with pytest.raises(SystemExit, match="no keypoint scale to adapt"):
        main(["predict", "--model", "copy-source", "-s", video, "-d", video, "--relative", "--adapt_scale",
              "-o", str(tmp_path / "x.mp4")])
    assert not (tmp_path / "x.mp4").exists()


# ------------------------------------------------------------------------------------------ crops
def test_crop_source_and_driving_then_paste_back(synthetic_root: Path, tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    frames = _face_frames(synthetic_root, 6)
    source = _on_canvas(frames[:1], canvas=(480, 360), offset=(200, 60))[0]
    Image.fromarray(source).save(tmp_path / "source.png")
    driving = _on_canvas(frames, canvas=(400, 400), offset=(20, 120))
    write_video(tmp_path / "driving.mp4", driving, fps=10)

    out = tmp_path / "pasted.mp4"
    assert main(["predict", "--model", "copy-source", "-s", str(tmp_path / "source.png"),
                 "-d", str(tmp_path / "driving.mp4"), "--crop_source", "--crop_driving", "--paste_back",
                 "-o", str(out)]) == 0
    summary = json.loads(Path(f"{out}.json").read_text())
    left, top, right, bottom = summary["source_crop"]
    # The crop is a square around the placed face, and the driving box around the driving face.
    assert right - left == bottom - top and 200 - 40 <= left <= 200 + 60 and 60 - 60 <= top <= 60 + 60
    d_left, d_top, d_right, d_bottom = summary["driving_crop"]
    assert abs((d_left + d_right) / 2 - (20 + 128)) < 40 and abs((d_top + d_bottom) / 2 - (120 + 128)) < 40
    pasted = read_video(out).astype(np.float32)
    assert pasted.shape == (6, 360, 480, 3) and summary["output_size"] == [480, 360]
    # Outside the crop the source image is untouched; inside, copy-source's crop comes back in place.
    outside = np.ones((360, 480), bool)
    outside[max(top, 0):bottom, max(left, 0):right] = False
    assert np.abs(pasted[:, outside] - source[outside]).mean() < 2.0
    inside = pasted[:, max(top, 0):bottom, max(left, 0):right]
    assert np.abs(inside - source[max(top, 0):bottom, max(left, 0):right]).mean() < 12.0

    with pytest.raises(SystemExit, match="add --crop_source"):
        main(["predict", "--model", "copy-source", "-s", str(tmp_path / "source.png"),
              "-d", str(tmp_path / "driving.mp4"), "--paste_back", "-o", str(tmp_path / "y.mp4")])
    Image.fromarray(np.full((300, 300, 3), 128, np.uint8)).save(tmp_path / "wall.png")
    with pytest.raises(SystemExit, match=r"--crop_source .*wall\.png: no face found"):
        main(["predict", "--model", "copy-source", "-s", str(tmp_path / "wall.png"),
              "-d", str(tmp_path / "driving.mp4"), "--crop_source", "-o", str(tmp_path / "y.mp4")])
    assert not (tmp_path / "y.mp4").exists()


def test_paste_back_blends_only_inside_the_box() -> None:
    from reenact.data.facecrop import FaceCrop, feather_mask, paste_back

    mask = feather_mask(40, 0.1)
    assert mask[20, 20] == 1 and mask[0, 20] < 0.2 and mask[20, -1] < 0.2
    original = np.zeros((50, 60, 3), np.uint8)
    generated = np.full((2, 16, 16, 3), 200, np.uint8)
    crop = FaceCrop((40, -10, 80, 30), (50, 60))  # leaves the frame at the top and the right
    out = paste_back(original, generated, crop)
    assert out.shape == (2, 50, 60, 3)
    assert out[:, 30:, :].max() == 0 and out[:, :, :40].max() == 0
    assert out[:, 10, 55].min() == 200  # well inside the box


# ------------------------------------------------------------------------------------------ audio
def test_driving_audio_is_copied_into_the_output(synthetic_root: Path, tmp_path: Path) -> None:
    driving = _video_with_audio(tmp_path / "talk.mp4", _face_frames(synthetic_root, 10))  # 2 s at 5 fps
    source = str(sorted((synthetic_root / "test").iterdir())[1])
    out = tmp_path / "with_audio.mp4"
    assert main(["predict", "--model", "copy-source", "-s", source, "-d", str(driving), "-o", str(out)]) == 0
    assert audio_stream_info(out) == "aac"
    assert json.loads(Path(f"{out}.json").read_text())["audio"] == "aac"
    import av

    with av.open(str(out)) as container:  # cut at the video's 2 s, not the source track's 3 s
        assert container.duration / 1e6 < 2.3
    assert read_video(out).shape[0] == 10

    assert main(["predict", "--model", "copy-source", "-s", source, "-d", str(driving), "--no_audio",
                 "-o", str(tmp_path / "silent.mp4")]) == 0
    assert audio_stream_info(tmp_path / "silent.mp4") is None
    assert main(["predict", "--model", "copy-source", "-s", source, "-d", str(driving),
                 "-o", str(tmp_path / "clip.gif")]) == 0
    assert "GIF has no audio" in json.loads((tmp_path / "clip.gif.json").read_text())["audio"]
