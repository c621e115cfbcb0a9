"""Video and frame-folder input/output.

Every reader returns frames as ``uint8`` arrays of shape ``[T, H, W, 3]`` (RGB). Grayscale frames are
expanded to three channels and RGBA frames are composited on black, so the rest of the pipeline only
ever sees RGB. Every writer is atomic: it writes to a temporary name beside the target and renames,
so an interrupted run never leaves a half-written video that looks complete.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".gif", ".mkv", ".webm")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class VideoReadError(RuntimeError):
    """A video or frame folder could not be decoded. The message names the file and the problem."""


def is_video_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


def frame_files(folder: Path) -> list[Path]:
    """Image files of a frame folder in natural order (``2.png`` before ``10.png``)."""

    def key(p: Path) -> tuple:
        stem = p.stem
        digits = "".join(ch for ch in stem if ch.isdigit())
        return (int(digits) if digits else -1, stem)

    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=key)


def to_rgb(frame: np.ndarray) -> np.ndarray:
    """``[H, W]``, ``[H, W, 1]``, ``[H, W, 3]`` or ``[H, W, 4]`` uint8 -> ``[H, W, 3]`` uint8."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    if frame.shape[2] == 4:
        alpha = frame[:, :, 3:4].astype(np.float32) / 255.0
        return np.round(frame[:, :, :3].astype(np.float32) * alpha).astype(np.uint8)
    if frame.shape[2] != 3:
        raise ValueError(f"unsupported channel count {frame.shape[2]}")
    return frame


def read_image(path: str | Path) -> np.ndarray:
    """One image file -> ``[H, W, 3]`` uint8 RGB."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                array = np.asarray(image.convert("RGBA"))
            elif image.mode in ("L", "I", "I;16", "1"):
                array = np.asarray(image.convert("L"))
            else:
                array = np.asarray(image.convert("RGB"))
    except Exception as error:  # PIL raises several unrelated types for broken files
        raise VideoReadError(f"{path}: cannot read image ({error})") from error
    return to_rgb(array)


def to_tensor(frames: Any, size: int | None = None) -> Any:
    """``[N, H, W, 3]`` uint8 -> ``[N, 3, H, W]`` float in [0, 1], resized to ``size x size`` when given
    (antialiased bilinear)."""
    import torch
    import torch.nn.functional as F

    tensor = torch.from_numpy(np.require(frames, requirements="W")).permute(0, 3, 1, 2).float().div(255)
    if size is None:
        return tensor
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp(0, 1)


def read_video(path: str | Path, max_frames: int | None = None) -> np.ndarray:
    """A video file or a folder of frames -> ``[T, H, W, 3]`` uint8 RGB.

    Raises :class:`VideoReadError` naming ``path`` when the file cannot be decoded, holds no frame,
    or its frames do not all have the same size.
    """
    path = Path(path)
    if path.is_dir():
        files = frame_files(path)
        if max_frames is not None:
            files = files[:max_frames]
        if not files:
            raise VideoReadError(f"{path}: frame folder holds no PNG/JPG frame")
        frames = [read_image(f) for f in files]
    elif path.is_file():
        frames = list(_decode(path, max_frames))
    else:
        raise VideoReadError(f"{path}: no such video file or frame folder")
    if not frames:
        raise VideoReadError(f"{path}: holds no decodable frame")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VideoReadError(f"{path}: frames of different sizes {sorted(shapes)}")
    return np.stack(frames)


def _decode(path: Path, max_frames: int | None) -> Iterator[np.ndarray]:
    if path.suffix.lower() == ".gif":
        # PyAV decodes GIFs too, but PIL keeps palette transparency right.
        try:
            with Image.open(path) as image:
                index = 0
                while max_frames is None or index < max_frames:
                    try:
                        image.seek(index)
                    except EOFError:
                        break
                    yield to_rgb(np.asarray(image.convert("RGB")))
                    index += 1
        except VideoReadError:
            raise
        except Exception as error:
            raise VideoReadError(f"{path}: cannot decode GIF ({error})") from error
        return
    for count, frame in enumerate(decoded_frames(path), start=1):
        yield frame.to_ndarray(format="rgb24")
        if max_frames is not None and count >= max_frames:
            break


def decoded_frames(path: Path) -> Iterator[Any]:
    """PyAV's decoded frames (``av.VideoFrame``) of the first video stream of ``path``: the one decode loop that
    reading (:func:`read_video`) and probing (:mod:`reenact.data.discovery`) share. Raises
    :class:`VideoReadError` naming the file when it has no video stream or cannot be decoded."""
    import av  # imported lazily: PyAV is heavy and most code paths never decode video

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoReadError(f"{path}: contains no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            yield from container.decode(stream)
    except VideoReadError:
        raise
    except Exception as error:  # av.error.* and OSError for truncated or foreign files
        raise VideoReadError(f"{path}: cannot decode video ({type(error).__name__}: {error})") from error


def count_frames(path: str | Path) -> int:
    """Number of frames, decoding the stream when the container does not state it reliably."""
    path = Path(path)
    if path.is_dir():
        return len(frame_files(path))
    return len(read_video(path))


def umask_mode(directory: bool = False) -> int:
    """The permissions ``open()``/``mkdir()`` would give a new file (0666) or folder (0777) under the umask.

    ``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 entries whatever the umask; an atomic writer that renames
    one into place must set these modes itself, or every output would be private to its owner.
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


@contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only if the block succeeds.

    The result has the permissions a plain ``open(target, "w")`` would give it (the umask's), not mkstemp's 0600.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix, dir=target.parent
    )
    os.close(handle)
    temporary = Path(name)
    try:
        yield temporary
        os.chmod(temporary, umask_mode())
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_write_json(target: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON to ``target`` atomically (a reader never sees half a file)."""
    with atomic_path(target) as temporary:
        temporary.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return Path(target)


def check_writable(target: str | Path, overwrite: bool) -> Path:
    """Refuse to overwrite an existing output unless asked; called before any long work starts."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    return target


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25.0, crf: int = 12,
                audio_from: str | Path | None = None) -> Path:
    """Write ``[T, H, W, 3]`` uint8 RGB frames atomically.

    ``.mp4``/``.mov``/``.mkv`` use H.264 (yuv444p when the size is odd, since 4:2:0 needs even sizes),
    ``.avi`` uses MJPEG, ``.gif`` uses PIL. Low ``crf`` keeps compression artefacts below what the
    metrics can see on the synthetic data. ``audio_from``: a video whose audio track (if it has one) is copied
    into the output, cut to the output's duration (:func:`mux_audio`; not for ``.gif``).
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"write_video expects [T, H, W, 3] uint8 frames, got {frames.shape} {frames.dtype}")
    suffix = path.suffix.lower()
    with atomic_path(path) as temporary:
        if suffix == ".gif":
            images = [Image.fromarray(f) for f in frames]
            images[0].save(
                temporary, format="GIF", save_all=True, append_images=images[1:],
                duration=int(round(1000 / fps)), loop=0,
            )
        else:
            _encode(temporary, frames, fps, crf, suffix)
            if audio_from is not None and audio_stream_info(audio_from) is not None:
                with atomic_path(temporary) as muxed:
                    mux_audio(temporary, audio_from, muxed)
    return path


def audio_stream_info(path: str | Path) -> str | None:
    """The codec name of ``path``'s first audio stream, or ``None`` (no audio, a folder, an image, unreadable)."""
    path = Path(path)
    if not path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES or path.suffix.lower() == ".gif":
        return None
    import av

    try:
        with av.open(str(path)) as container:
            return container.streams.audio[0].codec_context.name if container.streams.audio else None
    except av.FFmpegError:
        return None


def mux_audio(video: str | Path, audio_from: str | Path, out: str | Path) -> None:
    """Write ``out``: the video stream of ``video`` (packets copied) and the first audio stream of
    ``audio_from``, cut at the video's duration. The audio packets are copied when the output container takes
    their codec (AAC, MP3, Opus... in MP4/MOV/MKV) and re-encoded to AAC otherwise (e.g. PCM in MP4)."""
    import av

    suffix = Path(out).suffix.lower()
    container_format = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}.get(suffix)
    with av.open(str(video)) as video_in, av.open(str(audio_from)) as audio_in:
        video_stream, audio_stream = video_in.streams.video[0], audio_in.streams.audio[0]
        if video_stream.frames and video_stream.average_rate:
            duration: float | None = float(video_stream.frames / video_stream.average_rate)
        else:  # Matroska stores no frame count
            duration = video_in.duration / 1e6 if video_in.duration else None
        copy = container_format == "matroska" or audio_stream.codec_context.name in ("aac", "mp3", "opus", "alac")
        with av.open(str(out), mode="w", format=container_format) as output:
            video_out = output.add_stream_from_template(video_stream)
            if copy:
                audio_out = output.add_stream_from_template(audio_stream)
            else:
                audio_out = output.add_stream("aac", rate=audio_stream.codec_context.sample_rate)
            for packet in video_in.demux(video_stream):
                if packet.size == 0:  # the demuxer's end-of-stream packet
                    continue
                packet.stream = video_out
                output.mux(packet)
            for packet in audio_in.demux(audio_stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                if duration is not None and float(packet.pts * packet.time_base) >= duration:
                    break
                if copy:
                    packet.stream = audio_out
                    output.mux(packet)
                else:
                    for frame in packet.decode():
                        frame.pts = None
                        for encoded in audio_out.encode(frame):
                            output.mux(encoded)
            if not copy:
                for encoded in audio_out.encode():
                    output.mux(encoded)


def _encode(path: Path, frames: np.ndarray, fps: float, crf: int, suffix: str) -> None:
    from fractions import Fraction

    import av

    height, width = frames.shape[1:3]
    container_format = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi", ".webm": "webm"}[suffix]
    with av.open(str(path), mode="w", format=container_format) as container:
        if suffix == ".avi":
            stream = container.add_stream("mjpeg", rate=Fraction(fps).limit_denominator(1000))
            stream.pix_fmt = "yuvj444p"
            stream.options = {"q:v": "2"}
        elif suffix == ".webm":
            stream = container.add_stream("libvpx-vp9", rate=Fraction(fps).limit_denominator(1000))
            stream.pix_fmt = "yuv444p"
        else:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        stream.width, stream.height = width, height
        for array in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@contextmanager
def atomic_directory(target: str | Path, replace_empty: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; rename it onto ``target`` (with the umask's mode) only if the
    block succeeds, else remove it. ``replace_empty``: an existing *empty* ``target`` is replaced."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield temporary
        if replace_empty and target.exists():
            target.rmdir()
        os.chmod(temporary, umask_mode(directory=True))
        os.replace(temporary, target)
    finally:
        if temporary.exists():
            import shutil

            shutil.rmtree(temporary, ignore_errors=True)


def write_frame_folder(folder: str | Path, frames: np.ndarray, suffix: str = ".png") -> Path:
    """Write frames as ``0000.png``, ``0001.png``... into ``folder``, atomically (temporary folder + rename)."""
    folder = Path(folder)
    if folder.exists():
        raise FileExistsError(f"{folder} already exists")
    with atomic_directory(folder) as temporary:
        for index, frame in enumerate(np.asarray(frames)):
            Image.fromarray(frame).save(temporary / f"{index:04d}{suffix}")
    return folder


def video_fps(path: str | Path, default: float = 25.0) -> float:
    """Frame rate stated by a video container; ``default`` for frame folders, GIFs without timing, or none."""
    path = Path(path)
    if path.is_dir() or not path.is_file():
        return default
    if path.suffix.lower() == ".gif":
        try:
            with Image.open(path) as image:
                duration = image.info.get("duration")
            return 1000.0 / duration if duration else default
        except Exception:
            return default
    import av

    try:
        with av.open(str(path)) as container:
            rate = container.streams.video[0].average_rate if container.streams.video else None
            return float(rate) if rate else default
    except Exception:
        return default
