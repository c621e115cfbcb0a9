"""``reenact preprocess IN OUT``: detect, crop, resize and annotate raw videos and images (FOMM layout).

What it writes (``OUT`` is a dataset root that :class:`reenact.data.ReenactDataModule` reads)::

    OUT/
      train/<name>.mp4                  one cropped video per clip (or <name>/0000.png ... with --format png)
      test/<name>.mp4                   only when IN has a test/ folder (or --split test)
      images/<name>.png                 one cropped PNG per input image (usable as `reenact predict --source`)
      annotations/<split>/<name>.npz    68 landmarks, head pose, detection flags per frame
      annotations/images/<name>.npz     the same for the images
      preprocess.json                   per-input status, crop box and frames (machine-readable)

Crop rule (one stable crop per clip, FOMM ``crop-video.py`` style):

1. Every ``stride``-th frame is downscaled so its longest side is at most ``detect_size`` and the landmark
   backend (:func:`reenact.face.landmarks.get_landmark_backend`, dlib by default) finds the largest face.
2. A frame's *face box* is the bounding box of its 68 landmarks with the top raised by :data:`FOREHEAD` of the
   box height (the landmarks stop at the eyebrows; a face detector's box includes the forehead).
3. Consecutive detections stay in one segment while their IoU with the segment's *first* box is at least
   ``iou_threshold`` (FOMM's ``iou_with_initial``, 0.25); a lower IoU (the face jumped: a cut, another
   person) starts a new segment, written as ``<name>_partNN``. ``iou_threshold=0`` keeps one crop per clip.
   Segments shorter than ``min_frames`` are dropped (unless every segment is that short: the longest is kept).
4. The crop of a segment is the union of its face boxes, made square around the union's centre with side
   ``(1 + 2 * increase) * max(width, height)``. Parts of the square outside the frame are filled by edge
   replication (the square is never clamped or shifted, so the face stays centred and nothing is stretched).
5. The square is resized to ``size x size`` (PIL bicubic, antialiased).

Annotations are computed *after* cropping, on the stored frames, by
:func:`reenact.data.annotate.annotate_video` (the function behind ``reenact data annotate``), so the files
are identical in format: ``landmarks`` [F, 68, 2], ``pose`` [F, 3], ``detected`` [F] (frames without a
detection take the nearest detected frame's landmarks and ``detected = 0``).

Resuming: an output is finished once its annotation file (written last, atomically) exists; inputs whose
outputs are all finished are skipped (``skipped-existing``) unless ``overwrite``. Inputs with no face are
tried again on every run. ``preprocess.json`` is rewritten atomically after every input.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from reenact.data.discovery import SPLITS, annotation_path
from reenact.data.facecrop import (
    FOREHEAD,
    NoFaceError,
    _require_backend,
    box_iou,
    crop_frame,
    crop_image,
    detect_face_box,
    face_box,
    square_crop_box,
)
from reenact.data.video import (
    VIDEO_SUFFIXES,
    VideoReadError,
    _decode,
    atomic_path,
    atomic_write_json,
    read_image,
    video_fps,
    write_frame_folder,
    write_video,
)

#: File suffixes read as videos and as single images.
INPUT_VIDEO_SUFFIXES: tuple[str, ...] = VIDEO_SUFFIXES
INPUT_IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Sub-folder of OUT (and pseudo-split of ``annotations/``) holding cropped single images.
IMAGE_DIR = "images"
SUMMARY_FILE = "preprocess.json"
STATUSES = ("processed", "skipped-existing", "no-face", "too-short", "unreadable")
#: Fewest frames of a stored clip: the dataset checks (and every training sampler) need a source and a driving frame.
MIN_CLIP_FRAMES = 2
#: Settings that change what an output holds: a re-run with other values must redo the outputs, not skip them.
OUTPUT_SETTINGS = ("size", "increase", "iou_threshold", "video_format", "backend")


# ----------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class InputFile:
    """One input: ``kind`` is ``video`` or ``image``; ``name`` is the output name (unique per destination);
    ``split`` is where a video goes (images always go to ``images/``)."""

    path: Path
    kind: str
    split: str
    name: str

    @property
    def key(self) -> str:
        return str(self.path)


def _kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "video" if suffix in INPUT_VIDEO_SUFFIXES else "image" if suffix in INPUT_IMAGE_SUFFIXES else None


def find_inputs(source: str | Path, split: str = "auto") -> list[InputFile]:
    """The videos and images of ``source`` (a file, or a folder searched recursively), sorted by path.

    Names: a file directly in ``source`` keeps its stem; ``person/clip.mp4`` becomes ``person#clip`` and
    deeper paths ``person#a_b_clip`` (identity = first folder, the dataset's ``<identity>#<clip>`` rule).
    ``split="auto"`` sends files under a top-level ``train/``, ``val/`` or ``test/`` folder of ``source`` to that
    split (the folder is not part of the name) and everything else to ``train``. Clashing names get ``_2``,
    ``_3``... Hidden files and folders are ignored.

    Raises ``FileNotFoundError`` naming ``source`` when it does not exist, ``ValueError`` when it is a file of
    an unsupported type or a folder without any supported file.
    """
    source = Path(source)
    if split not in ("auto", *SPLITS):
        raise ValueError(f"split must be auto, train, val or test, not {split!r}")
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such file or folder")
    supported = ", ".join(INPUT_VIDEO_SUFFIXES + INPUT_IMAGE_SUFFIXES)
    if source.is_file():
        kind = _kind(source)
        if kind is None:
            raise ValueError(f"{source}: unsupported file type {source.suffix!r} (supported: {supported})")
        return [InputFile(source, kind, "train" if split == "auto" else split, source.stem)]
    files = sorted(
        path for path in source.rglob("*")
        if path.is_file() and _kind(path) is not None
        and not any(part.startswith(".") for part in path.relative_to(source).parts)
    )
    if not files:
        raise ValueError(f"{source}: folder holds no video or image file ({supported})")
    inputs: list[InputFile] = []
    taken: set[tuple[str, str]] = set()
    for path in files:
        kind = _kind(path)
        assert kind is not None
        parts = list(path.relative_to(source).parts)
        target = "train" if split == "auto" else split
        if split == "auto" and len(parts) > 1 and parts[0] in SPLITS:
            target = parts.pop(0)
        stems = [*parts[:-1], Path(parts[-1]).stem]
        name = stems[0] if len(stems) == 1 else f"{stems[0]}#{'_'.join(stems[1:])}"
        where = IMAGE_DIR if kind == "image" else target
        unique, count = name, 1
        while (where, unique) in taken:
            count += 1
            unique = f"{name}_{count}"
        taken.add((where, unique))
        inputs.append(InputFile(path, kind, target, unique))
    return inputs


def _iter_frames(path: Path) -> Iterator[np.ndarray]:
    """Stream ``[H, W, 3]`` uint8 RGB frames of a video file (or the one frame of an image)."""
    if path.suffix.lower() in INPUT_IMAGE_SUFFIXES:
        yield read_image(path)
        return
    yield from _decode(path, None)


# ------------------------------------------------------------------------------------------ config
@dataclass(frozen=True)
class PreprocessConfig:
    """Options of :func:`preprocess` (see ``reenact preprocess --help``)."""

    size: int = 256
    increase: float = 0.1
    iou_threshold: float = 0.25
    min_frames: int = 2
    stride: int = 1
    detect_size: int = 640
    backend: str = "dlib"
    video_format: str = "mp4"
    split: str = "auto"
    overwrite: bool = False
    test_fraction: float = 0.0

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.test_fraction < 1:
            problems.append(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.size < 16:
            problems.append(f"size must be >= 16, got {self.size}")
        if self.increase < 0:
            problems.append(f"increase must be >= 0, got {self.increase}")
        if not 0 <= self.iou_threshold <= 1:
            problems.append(f"iou_threshold must be in [0, 1], got {self.iou_threshold}")
        if self.stride < 1 or self.min_frames < 1:
            problems.append(f"stride and min_frames must be >= 1, got {self.stride} and {self.min_frames}")
        if self.video_format not in ("mp4", "png"):
            problems.append(f"video_format must be mp4 or png, not {self.video_format!r}")
        if problems:
            raise ValueError("; ".join(problems))


@dataclass
class Segment:
    """Frames ``[start, end)`` of one input cropped with one box; ``boxes`` are the face boxes found in it."""

    start: int
    end: int
    boxes: list[np.ndarray] = field(default_factory=list)


def split_segments(detections: list[tuple[int, np.ndarray | None]], num_frames: int, iou_threshold: float,
                   min_frames: int = 1) -> tuple[list[Segment], int]:
    """Sampled ``(frame index, face box or None)`` in frame order -> (segments, frames dropped).

    A detection whose IoU with its segment's first box is below ``iou_threshold`` starts a new segment at its
    frame; frames before the first detection belong to the first segment. Segments shorter than
    ``min_frames`` are dropped unless all are, in which case the longest is kept. ``[]`` when nothing was
    detected.
    """
    segments: list[Segment] = []
    for index, box in detections:
        if box is None:
            continue
        if not segments:
            segments.append(Segment(0, num_frames, [box]))
        elif iou_threshold > 0 and box_iou(segments[-1].boxes[0], box) < iou_threshold:
            segments[-1].end = index
            segments.append(Segment(index, num_frames, [box]))
        else:
            segments[-1].boxes.append(box)
    kept = [segment for segment in segments if segment.end - segment.start >= min_frames]
    if segments and not kept:
        kept = [max(segments, key=lambda segment: segment.end - segment.start)]
    dropped = sum(segment.end - segment.start for segment in segments if segment not in kept)
    return kept, dropped


# ------------------------------------------------------------------------------------------ results
@dataclass
class InputResult:
    """What happened to one input; ``outputs`` holds one dict per written clip or image (``name``, ``path``
    and ``annotation`` relative to OUT, ``frames`` ``[start, end)`` of the input, ``crop_box`` ``[left, top,
    right, bottom]`` in input pixels, ``padded``, ``detection_rate`` after cropping)."""

    input: str
    kind: str
    split: str
    name: str
    status: str
    frames: int | None = None
    outputs: list[dict[str, Any]] = field(default_factory=list)
    dropped_frames: int = 0
    message: str = ""


@dataclass
class PreprocessSummary:
    """All :class:`InputResult` of a run, in input order."""

    source: str
    out: str
    config: PreprocessConfig
    results: list[InputResult] = field(default_factory=list)
    #: Records of an earlier run (``preprocess.json``) for inputs this run has not reached yet: kept in the file
    #: so that interrupting this run does not forget what the earlier one finished.
    earlier: dict[str, dict[str, Any]] = field(default_factory=dict)

    def by_status(self, status: str) -> list[InputResult]:
        return [result for result in self.results if result.status == status]

    def counts(self) -> dict[str, int]:
        return {status: len(self.by_status(status)) for status in STATUSES}

    def to_json(self) -> dict[str, Any]:
        reached = {result.input for result in self.results}
        carried = [record for key, record in self.earlier.items() if key not in reached]
        return {"source": self.source, "out": self.out, "config": asdict(self.config), "counts": self.counts(),
                "inputs": [asdict(result) for result in self.results] + carried}

    def write(self) -> Path:
        return atomic_write_json(Path(self.out) / SUMMARY_FILE, self.to_json())


def _output_entry(out: Path, item: InputFile, name: str, config: PreprocessConfig) -> tuple[Path, Path]:
    """(stored video or image, annotation file) of output ``name`` of ``item``."""
    if item.kind == "image":
        return out / IMAGE_DIR / f"{name}.png", annotation_path(out, IMAGE_DIR, name)
    suffix = ".mp4" if config.video_format == "mp4" else ""
    return out / item.split / f"{name}{suffix}", annotation_path(out, item.split, name)


def _finished(out: Path, outputs: list[dict[str, Any]]) -> bool:
    return bool(outputs) and all((out / o["path"]).exists() and (out / o["annotation"]).is_file() for o in outputs)


def _previous_results(out: Path) -> dict[str, dict[str, Any]]:
    """Input key -> record of an earlier run's ``preprocess.json`` (``{}`` when absent or unreadable)."""
    try:
        data = json.loads((out / SUMMARY_FILE).read_text())
        return {record["input"]: record for record in data.get("inputs", []) if isinstance(record, dict)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


# ------------------------------------------------------------------------------------------- work
def preprocess_input(item: InputFile, out: Path, config: PreprocessConfig,
                     previous: dict[str, Any] | None = None) -> InputResult:
    """Detect, crop, resize, write and annotate one input (see the module docstring); never raises for a bad
    or faceless input: the returned status says ``unreadable`` or ``no-face`` and ``message`` why."""
    from reenact.data.annotate import annotate_video

    result = InputResult(input=item.key, kind=item.kind, split=IMAGE_DIR if item.kind == "image" else item.split,
                         name=item.name, status="processed")
    if not config.overwrite:
        if previous and previous.get("status") in ("processed", "skipped-existing") \
                and _finished(out, previous.get("outputs", [])):
            result.status, result.frames = "skipped-existing", previous.get("frames")
            result.outputs, result.dropped_frames = previous["outputs"], previous.get("dropped_frames", 0)
            return result
        stored, annotation = _output_entry(out, item, item.name, config)
        if stored.exists() and annotation.is_file():
            result.status, result.message = "skipped-existing", "output found (no earlier preprocess.json record)"
            result.outputs = [{"name": item.name, "path": str(stored.relative_to(out)),
                               "annotation": str(annotation.relative_to(out))}]
            return result
    # Pass 1: stream the frames, detect every stride-th one.
    detections: list[tuple[int, np.ndarray | None]] = []
    shape: tuple[int, ...] | None = None
    count = 0
    try:
        for count, frame in enumerate(_iter_frames(item.path), start=1):
            if shape is None:
                shape = frame.shape
            elif frame.shape != shape:
                raise VideoReadError(f"{item.path}: frames of different sizes {shape} and {frame.shape}")
            if (count - 1) % config.stride == 0:
                detections.append((count - 1, detect_face_box(frame, config.backend, config.detect_size)))
    except VideoReadError as error:
        result.status, result.message = "unreadable", str(error)
        return result
    result.frames = count
    if count == 0:
        result.status, result.message = "unreadable", f"{item.path}: holds no decodable frame"
        return result
    shortest = 1 if item.kind == "image" else max(MIN_CLIP_FRAMES, config.min_frames)
    segments, result.dropped_frames = split_segments(detections, count, config.iou_threshold, min_frames=shortest)
    if not segments:
        result.status = "no-face"
        result.message = f"no face in any of {len(detections)} sampled frame(s)"
        return result
    if item.kind == "video" and all(segment.end - segment.start < MIN_CLIP_FRAMES for segment in segments):
        # A 1-frame "video" would be written and then rejected by `reenact data check` and every sampler.
        result.status = "too-short"
        result.message = (f"{count} frame(s) with a face; a clip needs at least {MIN_CLIP_FRAMES} "
                          "(preprocess it as an image instead: give it a .png/.jpg name)")
        return result
    # Pass 2: crop every frame of every segment with its one box.
    boxes = [square_crop_box(np.stack(segment.boxes), config.increase) for segment in segments]
    crops: list[list[np.ndarray]] = [[] for _ in segments]
    try:
        for index, frame in enumerate(_iter_frames(item.path)):
            for number, segment in enumerate(segments):
                if segment.start <= index < segment.end:
                    crops[number].append(crop_frame(frame, boxes[number], config.size))
    except VideoReadError as error:
        result.status, result.message = "unreadable", str(error)
        return result
    fps = video_fps(item.path) if item.kind == "video" else 25.0
    height, width = shape[:2] if shape is not None else (0, 0)
    # Outputs of an earlier run of this input (--overwrite, or another segmentation: `name` vs `name_partNN`)
    # would otherwise stay beside the new ones as duplicate clips.
    for output in (previous or {}).get("outputs", []):
        for key in ("path", "annotation"):
            if output.get(key):
                _remove(out / output[key])
    lost: list[str] = []
    for number, (segment, box, frames) in enumerate(zip(segments, boxes, crops, strict=True)):
        name = item.name if len(segments) == 1 else f"{item.name}_part{number:02d}"
        stored, annotation = _output_entry(out, item, name, config)
        _remove(annotation)
        _remove(stored)
        array = np.stack(frames)
        if item.kind == "image":
            with atomic_path(stored) as temporary:
                Image.fromarray(array[0]).save(temporary, format="PNG")
        elif config.video_format == "png":
            write_frame_folder(stored, array)
        else:
            write_video(stored, array, fps=fps)
        arrays = annotate_video(stored, config.backend)
        if arrays is None:  # the detector found the face in the input but not in the crop
            _remove(stored)
            lost.append(name)
            continue
        annotation.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(annotation) as temporary, open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        result.outputs.append({
            "name": name, "path": str(stored.relative_to(out)), "annotation": str(annotation.relative_to(out)),
            "frames": [segment.start, segment.end], "crop_box": list(box),
            "padded": bool(box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height),
            "detection_rate": round(float(arrays["detected"].mean()), 4),
        })
    if not result.outputs:
        result.status = "no-face"
        result.message = "a face was detected in the input but in none of the cropped frames"
    elif lost:
        result.message = f"dropped {', '.join(lost)}: no face detected after cropping"
    return result


def preprocess(source: str | Path, out: str | Path, config: PreprocessConfig | None = None, *,
               on_input: Callable[[InputFile, InputResult], None] | None = None,
               on_start: Callable[[list[InputFile]], None] | None = None) -> PreprocessSummary:
    """Preprocess every input of ``source`` into the dataset root ``out`` (see the module docstring).

    Raises before any long work: ``FileNotFoundError``/``ValueError`` naming ``source`` when it is missing or
    holds nothing usable, ``ValueError`` for bad options or an ``out`` that is a file, ``RuntimeError`` when the
    landmark backend is unavailable. Unreadable or faceless inputs are recorded, not raised.
    """
    config = config or PreprocessConfig()
    inputs = find_inputs(source, config.split)
    if config.test_fraction > 0:
        inputs = assign_test_identities(inputs, config.test_fraction)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: output exists and is not a folder")
    if not config.overwrite:
        _check_same_settings(out, config)
    _require_backend(config.backend)
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_results(out)
    summary = PreprocessSummary(source=str(source), out=str(out), config=config, earlier=previous)
    if on_start is not None:
        on_start(inputs)
    for item in inputs:
        result = preprocess_input(item, out, config, previous.get(item.key))
        summary.results.append(result)
        summary.write()  # after every input, so an interrupted run leaves an up-to-date record
        if on_input is not None:
            on_input(item, result)
    return summary


def assign_test_identities(inputs: list[InputFile], fraction: float, seed: int = 0) -> list[InputFile]:
    """Move the videos of ``round(fraction * identities)`` identities (at least 1) from ``train`` to ``test``.

    Identities are the ``<identity>`` part of ``<identity>#<clip>`` names (a file directly in IN is its own
    identity), so no identity is in both splits: cross-identity evaluation needs unseen faces. The choice is a
    seeded shuffle of the sorted identities, so a re-run (resuming) picks the same ones. Videos already under a
    ``test/`` or ``val/`` folder of IN, and images, keep their place.

    Raises ``ValueError`` when fewer than 2 identities are in ``train`` (nothing would be left to train on).
    """
    train_ids = sorted({item.name.split("#", 1)[0] for item in inputs
                        if item.kind == "video" and item.split == "train"})
    if len(train_ids) < 2:
        raise ValueError(f"--test_fraction needs videos of at least 2 identities (<identity>/<clip> folders or "
                         f"files), found {len(train_ids)}")
    count = min(len(train_ids) - 1, max(1, round(fraction * len(train_ids))))
    order = np.random.default_rng(seed).permutation(len(train_ids))
    chosen = {train_ids[i] for i in order[:count]}
    return [InputFile(item.path, item.kind, "test", item.name)
            if item.kind == "video" and item.split == "train" and item.name.split("#", 1)[0] in chosen else item
            for item in inputs]


def _check_same_settings(out: Path, config: PreprocessConfig) -> None:
    """Refuse, before any work, to add to (or skip into) outputs made with other output settings."""
    try:
        earlier = json.loads((out / SUMMARY_FILE).read_text()).get("config") or {}
    except (OSError, ValueError, AttributeError):
        return
    changed = [f"{key}: {earlier[key]!r} there, {getattr(config, key)!r} now" for key in OUTPUT_SETTINGS
               if key in earlier and earlier[key] != getattr(config, key)]
    if changed:
        raise ValueError(f"{out} holds outputs made with other settings ({'; '.join(changed)}); pass --overwrite "
                         "to redo them with the new settings, or choose another OUT")


__all__ = [
    "FOREHEAD", "INPUT_IMAGE_SUFFIXES", "INPUT_VIDEO_SUFFIXES", "InputFile", "InputResult", "NoFaceError",
    "PreprocessConfig", "PreprocessSummary", "Segment", "assign_test_identities", "box_iou",
    "crop_frame", "crop_image",
    "detect_face_box", "face_box", "find_inputs", "preprocess", "preprocess_input",
    "split_segments", "square_crop_box",
]
