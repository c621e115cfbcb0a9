"""Find the videos of a FOMM-layout dataset and describe each one without keeping its frames.

Layout::

    root/
      train/    <video>.mp4 | .avi | .mov | .gif | .mkv | .webm, or <video>/0000.png, 0001.png ... (or .jpg)
      test/
      val/                       optional; validation falls back to test/
      annotations/<split>/<video>.npz   optional per-video annotations
      meta.json                  optional

A video's *name* is its file stem or folder name. Names of the form ``<identity>#<clip>`` group videos by
identity (split on the first ``#``); a name without ``#`` is its own identity. Entries whose name starts with
``.`` are ignored: the atomic writers in :mod:`reenact.data.video` create hidden temporary files beside their
targets, and an interrupted write must not look like a video.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from reenact.data.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoReadError, decoded_frames, frame_files

SPLITS = ("train", "val", "test")
ANNOTATION_DIR = "annotations"


class DatasetError(ValueError):
    """The dataset cannot be used as given. The message lists every offending file."""


@dataclass(frozen=True)
class VideoRecord:
    """One video of a split, as found on disk.

    Attributes:
        path: the video file or frame folder.
        name: file stem or folder name; unique within a split.
        identity: the part of ``name`` before the first ``#`` (the whole name when there is none).
        clip: the part after the first ``#`` (empty when there is none).
        split: ``train``, ``val`` or ``test``.
        num_frames: decoded frame count.
        height, width: stored frame size in pixels (before any resizing).
        annotation: ``root/annotations/<split>/<name>.npz`` when that file exists, else ``None``.
    """

    path: Path
    name: str
    identity: str
    clip: str
    split: str
    num_frames: int
    height: int
    width: int
    annotation: Path | None = None


@dataclass(frozen=True)
class VideoProbe:
    """What decoding a video told us.

    Attributes:
        num_frames: frames decoded.
        sizes: distinct ``(height, width)`` frame sizes, in order of first appearance; more than one means
            the frames inside this one video differ in size.
        color: ``"rgb"``, ``"grayscale"`` or ``"rgba"`` (alpha, composited on black by the reader).
    """

    num_frames: int
    sizes: tuple[tuple[int, int], ...]
    color: str

    @property
    def height(self) -> int:
        return self.sizes[0][0]

    @property
    def width(self) -> int:
        return self.sizes[0][1]


def split_identity(name: str) -> tuple[str, str]:
    """``"id01#clip3"`` -> ``("id01", "clip3")``; ``"alice"`` -> ``("alice", "")``."""
    identity, _, clip = name.partition("#")
    return identity, clip


def video_name(path: Path) -> str:
    """File stem for a video file, folder name for a frame folder."""
    return path.name if path.is_dir() else path.stem


def list_entries(split_dir: Path) -> tuple[list[Path], list[Path]]:
    """Entries of a split folder -> ``(videos, ignored)``, both sorted by name.

    Every non-hidden folder counts as a frame-folder video (an empty one is reported later, not skipped);
    files count when their suffix is a known video suffix. Other non-hidden files are returned as ignored.
    """
    videos: list[Path] = []
    ignored: list[Path] = []
    for entry in sorted(split_dir.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix.lower() in VIDEO_SUFFIXES:
            videos.append(entry)
        else:
            ignored.append(entry)
    return videos, ignored


# Probing decodes a whole video, so results are cached per process, keyed on what changes when the file is
# rewritten. Records carry the counts into DataLoader workers, which therefore never probe.
_PROBE_CACHE: dict[tuple[str, int, int, bool], VideoProbe] = {}


def probe_video(path: str | Path, verify: bool = False) -> VideoProbe:
    """Decode ``path`` (video file or frame folder) far enough to count its frames and learn their size.

    Video files are always decoded completely: container frame counts are missing or wrong for several
    formats (avi, webm, gif, truncated files), and a full decode is what proves the file readable. Frame
    folders are counted from their file list; with ``verify=True`` every image is also decoded, which is
    the only way to catch a truncated PNG/JPG before training reads it.

    Raises :class:`VideoReadError` naming ``path`` for any decoding problem.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as error:
        raise VideoReadError(f"{path}: no such video file or frame folder") from error
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, verify)
    cached = _PROBE_CACHE.get(key)
    if cached is None:
        cached = _probe_folder(path, verify) if path.is_dir() else _probe_file(path)
        _PROBE_CACHE[key] = cached
    return cached


def _color_of_pil_mode(image: Image.Image) -> str:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        return "rgba"
    if image.mode in ("L", "I", "I;16", "1", "F"):
        return "grayscale"
    return "rgb"


def _probe_folder(path: Path, verify: bool) -> VideoProbe:
    files = frame_files(path)
    if not files:
        raise VideoReadError(f"{path}: frame folder holds no PNG/JPG frame")
    sizes: list[tuple[int, int]] = []
    colors: set[str] = set()
    # Without verification, the first frame stands for all: opening every header of a large folder costs
    # as much as the decode we are trying to avoid.
    for file in files if verify else files[:1]:
        try:
            with Image.open(file) as image:
                if verify:
                    image.load()
                size = (image.height, image.width)
                colors.add(_color_of_pil_mode(image))
        except Exception as error:  # PIL raises several unrelated types for broken files
            raise VideoReadError(f"{file}: cannot read image ({error})") from error
        if size not in sizes:
            sizes.append(size)
    color = "rgba" if "rgba" in colors else "grayscale" if "grayscale" in colors else "rgb"
    return VideoProbe(num_frames=len(files), sizes=tuple(sizes), color=color)


def _probe_file(path: Path) -> VideoProbe:
    if path.suffix.lower() == ".gif":
        return _probe_gif(path)
    sizes: list[tuple[int, int]] = []
    color = "rgb"
    count = 0
    for frame in decoded_frames(path):
        size = (frame.height, frame.width)
        if size not in sizes:
            sizes.append(size)
        fmt = frame.format
        components = len(fmt.components)
        if components in (2, 4) and not fmt.has_palette:
            color = "rgba"
        elif components == 1 and not fmt.has_palette and color == "rgb":
            color = "grayscale"
        count += 1
    if count == 0:
        raise VideoReadError(f"{path}: holds no decodable frame")
    return VideoProbe(num_frames=count, sizes=tuple(sizes), color=color)


def _probe_gif(path: Path) -> VideoProbe:
    sizes: list[tuple[int, int]] = []
    count = 0
    try:
        with Image.open(path) as image:
            color = _color_of_pil_mode(image)
            while True:
                try:
                    image.seek(count)
                except EOFError:
                    break
                image.load()
                size = (image.height, image.width)
                if size not in sizes:
                    sizes.append(size)
                count += 1
    except Exception as error:
        raise VideoReadError(f"{path}: cannot decode GIF ({type(error).__name__}: {error})") from error
    if count == 0:
        raise VideoReadError(f"{path}: holds no decodable frame")
    return VideoProbe(num_frames=count, sizes=tuple(sizes), color=color)


def annotation_path(root: str | Path, split: str, name: str) -> Path:
    """Where the annotations of video ``name`` of ``split`` live (whether or not the file exists)."""
    return Path(root) / ANNOTATION_DIR / split / f"{name}.npz"


def read_npz_header(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array names -> ``(shape, dtype)`` of an ``.npz`` file, reading headers only (no array data).

    Raises ``ValueError`` naming ``path`` when it is not a readable npz archive.
    """
    path = Path(path)
    header: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as handle:
                    version = np.lib.format.read_magic(handle)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
                    else:
                        # Format 3.0 has no public header reader; these files are rare and small.
                        with np.load(path, allow_pickle=False) as data:
                            array = data[info.filename[:-4]]
                            shape, dtype = array.shape, array.dtype
                header[info.filename[:-4]] = (tuple(shape), np.dtype(dtype))
    except Exception as error:
        raise ValueError(f"{path}: not a readable .npz archive ({type(error).__name__}: {error})") from error
    return header


def read_meta(root: str | Path) -> dict | None:
    """``root/meta.json`` as a dict, ``None`` when absent; ``ValueError`` naming the file when invalid."""
    path = Path(root) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    return meta


def discover(root: str | Path, split: str, *, verify: bool = False) -> list[VideoRecord]:
    """All videos of ``root/<split>``, sorted by name.

    Raises :class:`DatasetError` when the root or split folder is missing, the split is empty, two entries
    share a name, or any video cannot be decoded; the message lists every such file, not just the first.
    Run :func:`reenact.data.checks.check_dataset` for the full report (sizes, colours, annotations).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset root does not exist or is not a folder")
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: split folder '{split}' does not exist")
    entries, _ = list_entries(split_dir)
    if not entries:
        raise DatasetError(f"{split_dir}: split '{split}' holds no video (expected {VIDEO_SUFFIXES} files "
                           f"or folders of {IMAGE_SUFFIXES} frames)")
    errors: list[str] = []
    records: list[VideoRecord] = []
    seen: dict[str, Path] = {}
    for entry in entries:
        name = video_name(entry)
        if name in seen:
            errors.append(f"{entry}: video name '{name}' is also used by {seen[name]}")
            continue
        seen[name] = entry
        try:
            probe = probe_video(entry, verify=verify)
        except VideoReadError as error:
            errors.append(str(error))
            continue
        identity, clip = split_identity(name)
        annotation = annotation_path(root, split, name)
        records.append(
            VideoRecord(
                path=entry, name=name, identity=identity, clip=clip, split=split,
                num_frames=probe.num_frames, height=probe.height, width=probe.width,
                annotation=annotation if annotation.is_file() else None,
            )
        )
    if errors:
        lines = "\n".join(f"  - {error}" for error in errors)
        raise DatasetError(f"{len(errors)} unusable video(s) in {split_dir}:\n{lines}")
    return records


def identities(records: list[VideoRecord]) -> list[str]:
    """Sorted distinct identities; a record's identity index is its position in this list."""
    return sorted({record.identity for record in records})


# --------------------------------------------------------------------------------------------- annotations
# Expected arrays of an annotation file. "F" is the video's frame count, "*" any positive size; shapes are
# checked against this table by both the dataset check and the datasets.
ANNOTATION_SCHEMA: dict[str, tuple[str | int, ...]] = {
    "landmarks": ("F", 68, 2),
    "pose": ("F", 3),
    "expression": ("F", "*"),
    "translation": ("F", 2),
    "scale": ("F",),
    "identity_coeffs": ("*",),
    "identity": (),
    "detected": ("F",),  # uint8 1/0: the frame's landmarks were detected (1) or filled from a neighbour (0)
}
# The per-frame arrays that samples carry (as source_<key> / driving_<key>).
SAMPLE_ANNOTATION_KEYS = ("landmarks", "pose", "expression")


def validate_annotation_header(
    header: dict[str, tuple[tuple[int, ...], np.dtype]], num_frames: int | None
) -> tuple[list[str], list[str]]:
    """Check an annotation file's arrays against :data:`ANNOTATION_SCHEMA` -> ``(errors, warnings)``.

    ``num_frames`` is the video's frame count (``None`` when the video itself is unreadable, which skips the
    frame-count comparison). Unknown arrays are warnings, not errors, so that annotation files may carry
    extra data for other tools; a file with none of the known arrays is an error.
    """
    errors: list[str] = []
    warnings: list[str] = []
    known = [key for key in header if key in ANNOTATION_SCHEMA]
    unknown = sorted(key for key in header if key not in ANNOTATION_SCHEMA)
    if not known:
        errors.append(
            f"annotation file holds none of the expected arrays {sorted(ANNOTATION_SCHEMA)} (found {unknown})"
        )
        return errors, warnings
    if unknown:
        warnings.append(f"annotation arrays {unknown} are not part of the layout and are ignored")
    for key in known:
        shape, dtype = header[key]
        expected = ANNOTATION_SCHEMA[key]
        if key == "identity":
            if shape != () or dtype.kind not in "US":
                errors.append(f"'identity' must be a 0-d str array, got shape {list(shape)} dtype {dtype}")
            continue
        if dtype.kind not in "fiu":
            errors.append(f"'{key}' must be numeric, got dtype {dtype}")
            continue
        pretty = "[" + ", ".join(str(dim) for dim in expected) + "]"
        if len(shape) != len(expected) or any(
            isinstance(want, int) and got != want for got, want in zip(shape, expected, strict=False)
        ) or any(want == "*" and got < 1 for got, want in zip(shape, expected, strict=False)):
            errors.append(f"'{key}' has shape {list(shape)}, expected {pretty}")
            continue
        if expected and expected[0] == "F" and num_frames is not None and shape[0] != num_frames:
            errors.append(f"'{key}' has {shape[0]} frames but the video has {num_frames}")
    return errors, warnings


def common_annotation_keys(
    headers: list[dict[str, tuple[tuple[int, ...], np.dtype]] | None],
) -> tuple[list[str], dict[str, str]]:
    """The per-frame sample keys every video of a split can provide -> ``(keys, dropped)``.

    ``headers`` holds one npz header per video (``None`` for a video without annotation file). A key is
    used only when every video has it with the same trailing shape: default collation stacks samples of
    different videos, and a key present in some samples only would fail in the middle of an epoch.
    ``dropped`` maps each key some but not all videos provide to the reason it is left out.
    """
    if not headers or any(header is None for header in headers):
        present = {key for header in headers if header for key in header if key in SAMPLE_ANNOTATION_KEYS}
        return [], {key: "some videos have no annotation file" for key in sorted(present)}
    keys: list[str] = []
    dropped: dict[str, str] = {}
    for key in SAMPLE_ANNOTATION_KEYS:
        having = [header[key] for header in headers if header is not None and key in header]
        if not having:
            continue
        if len(having) < len(headers):
            dropped[key] = f"missing from {len(headers) - len(having)} of {len(headers)} annotation files"
            continue
        trailing = {shape[1:] for shape, _ in having}
        if len(trailing) > 1:
            dropped[key] = f"per-frame shapes differ across videos: {sorted(trailing)}"
            continue
        keys.append(key)
    return keys, dropped
