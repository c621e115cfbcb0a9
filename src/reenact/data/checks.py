"""Validate a FOMM-layout dataset before any training starts.

:func:`check_dataset` decodes every video and reads every annotation header, and turns each problem into a
:class:`Problem` naming the file; it never raises because of a bad file. :meth:`DatasetReport.raise_if_errors`
then raises one :class:`DatasetError` that lists every error, so a user fixes all files in one go instead of
discovering them one crash at a time in the middle of an epoch.

Errors (the dataset cannot be used as given):
    missing root; missing ``train/`` or ``test/`` (or a requested split); empty split; two videos with the
    same name; unreadable or truncated video; video shorter than ``min_frames``; frames of different sizes
    inside one video; missing annotation file when ``require_annotations``; annotation file that is not an
    npz, lacks every expected array, or has a wrong shape/dtype/frame count.
Warnings (usable, but worth knowing):
    different frame sizes across videos (all frames are resized anyway); non-square frames (stretched to a
    square); grayscale or RGBA frames (converted to RGB); frames smaller than ``image_size`` (upsampled);
    some videos annotated and others not (no annotations are used for that split); annotation arrays not
    shared by every video (dropped); unknown annotation arrays; annotation files without a video; files in
    a split that are neither a video nor a frame folder; unreadable ``meta.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from rich.table import Table

from reenact.data.discovery import (
    ANNOTATION_DIR,
    DatasetError,
    VideoProbe,
    VideoRecord,
    annotation_path,
    common_annotation_keys,
    list_entries,
    probe_video,
    read_meta,
    read_npz_header,
    split_identity,
    validate_annotation_header,
    video_name,
)

__all__ = ["DatasetError", "DatasetReport", "Problem", "check_dataset"]

Severity = Literal["error", "warning"]
# How many file names a summary warning spells out before it says "and N more".
_LIST_LIMIT = 10


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`check_dataset`: ``severity`` ``"error"`` or ``"warning"``, ``path`` the file."""

    severity: Severity
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.path}: {self.message}"


@dataclass
class DatasetReport:
    """Result of :func:`check_dataset`.

    Attributes:
        root: the dataset root as given.
        problems: every finding, in the order found.
        videos: number of video entries found per split (readable or not).
        frames: total decoded frames of the readable videos per split.
        annotation_keys: per split, the per-frame annotation arrays samples will carry.
        records: per split, the usable videos (readable, long enough, one frame size) as
            :class:`VideoRecord`; not part of :meth:`to_json`.
    """

    root: str
    problems: list[Problem] = field(default_factory=list)
    videos: dict[str, int] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    annotation_keys: dict[str, list[str]] = field(default_factory=dict)
    records: dict[str, list[VideoRecord]] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def error(self, path: str | Path, message: str) -> None:
        self.problems.append(Problem("error", str(path), message))

    def warning(self, path: str | Path, message: str) -> None:
        self.problems.append(Problem("warning", str(path), message))

    def to_json(self) -> dict:
        """The report as a JSON-serialisable dict (``json.dumps(report.to_json())``); records are left out."""
        return {
            "root": self.root,
            "ok": self.ok,
            "videos": dict(self.videos),
            "frames": dict(self.frames),
            "annotation_keys": {split: list(keys) for split, keys in self.annotation_keys.items()},
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "problems": [asdict(problem) for problem in self.problems],
        }

    def render(self) -> Table:
        """A ``rich`` table of every problem (or a single "no problem" row), titled with the video counts."""
        counts = ", ".join(f"{split}: {count} videos" for split, count in self.videos.items()) or "no video"
        table = Table(title=f"Dataset check of {self.root} ({counts})", show_lines=False)
        table.add_column("severity", no_wrap=True)
        table.add_column("file", overflow="fold")
        table.add_column("problem", overflow="fold")
        for problem in self.problems:
            style = "bold red" if problem.severity == "error" else "yellow"
            table.add_row(f"[{style}]{problem.severity}[/{style}]", problem.path, problem.message)
        if not self.problems:
            table.add_row("[green]ok[/green]", self.root, "no problem found")
        return table

    def raise_if_errors(self) -> None:
        """Raise :class:`DatasetError` listing every error with its file; do nothing when :attr:`ok`."""
        errors = self.errors
        if errors:
            lines = "\n".join(f"  - {problem.path}: {problem.message}" for problem in errors)
            raise DatasetError(f"dataset check of {self.root} found {len(errors)} error(s):\n{lines}")


def _strip_path(message: str, path: Path) -> str:
    # Reader errors start with the file name; the Problem carries it separately.
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _file_list(paths: list[str]) -> str:
    shown = ", ".join(paths[:_LIST_LIMIT])
    return shown + (f" and {len(paths) - _LIST_LIMIT} more" if len(paths) > _LIST_LIMIT else "")


def check_dataset(
    root: str | Path | None,
    *,
    splits: list[str] | tuple[str, ...] | None = None,
    min_frames: int = 2,
    image_size: int | None = None,
    require_annotations: bool = False,
    on_video: Callable[[Path], None] | None = None,
) -> DatasetReport:
    """Check a dataset and report every problem, naming the file; never raises because of a bad file.

    Args:
        root: the dataset root (holding ``train/`` and ``test/``).
        splits: the splits to check; ``None`` means ``train``, ``test`` and ``val`` when it exists. ``train``
            and ``test`` must exist when ``splits`` is ``None``; a split listed explicitly must exist.
        min_frames: a video with fewer decodable frames is an error.
        image_size: the square output size; frames smaller than it draw a warning (they are upsampled).
        require_annotations: a video without ``annotations/<split>/<name>.npz`` is an error, not a warning.
        on_video: called with each video's path once it is checked (progress display).

    Returns:
        A :class:`DatasetReport`; call :meth:`DatasetReport.raise_if_errors` to stop on errors.
    """
    report = DatasetReport(root=str(root))
    if root is None or not Path(root).exists():
        report.error(str(root), "dataset root does not exist")
        return report
    root = Path(root)
    if not root.is_dir():
        report.error(root, "dataset root is not a folder")
        return report
    if splits is None:
        splits = ["train", "test"] + (["val"] if (root / "val").is_dir() else [])
    for split in splits:
        try:
            _check_split(report, root, split, min_frames=min_frames, image_size=image_size,
                         require_annotations=require_annotations, on_video=on_video)
        except Exception as error:  # a filesystem surprise must still end up in the report, not a traceback
            report.error(root / split, f"could not check split ({type(error).__name__}: {error})")
    try:
        read_meta(root)
    except ValueError as error:
        report.warning(root / "meta.json", _strip_path(str(error), root / "meta.json"))
    return report


def _check_split(
    report: DatasetReport, root: Path, split: str, *, min_frames: int, image_size: int | None,
    require_annotations: bool, on_video: Callable[[Path], None] | None = None,
) -> None:
    split_dir = root / split
    report.records[split] = []
    report.frames[split] = 0
    if not split_dir.is_dir():
        report.videos[split] = 0
        report.error(split_dir, f"split folder '{split}/' does not exist")
        return
    entries, ignored = list_entries(split_dir)
    report.videos[split] = len(entries)
    for path in ignored:
        report.warning(path, "ignored: neither a video file nor a frame folder")
    if not entries:
        report.error(split_dir, f"split '{split}' holds no video (video files or folders of PNG/JPG frames)")
        return

    seen: dict[str, Path] = {}
    probes: dict[str, VideoProbe] = {}
    paths: dict[str, Path] = {}
    for entry in entries:
        name = video_name(entry)
        if name in seen:
            report.error(entry, f"video name '{name}' is also used by {seen[name].name}")
            continue
        seen[name] = entry
        try:
            probe = probe_video(entry, verify=True)
        except Exception as error:  # VideoReadError, but also anything a broken file might provoke
            report.error(entry, _strip_path(str(error), entry))
            continue
        finally:
            if on_video is not None:
                on_video(entry)
        if len(probe.sizes) > 1:
            sizes = ", ".join(f"{h}x{w}" for h, w in probe.sizes)
            report.error(entry, f"frames inside this video have different sizes (HxW: {sizes})")
            continue
        if probe.num_frames < min_frames:
            report.error(entry, f"too short: {probe.num_frames} frame(s), at least {min_frames} needed")
            continue
        if probe.height != probe.width:
            report.warning(entry, f"non-square frames {probe.height}x{probe.width} (HxW) are stretched to a "
                                  "square")
        if probe.color != "rgb":
            report.warning(entry, f"{probe.color} frames are converted to RGB")
        probes[name] = probe
        paths[name] = entry
    report.frames[split] = sum(probe.num_frames for probe in probes.values())

    sizes = Counter((probe.height, probe.width) for probe in probes.values())
    if len(sizes) > 1:
        common = sizes.most_common(1)[0][0]
        others = [f"{paths[n].name} ({p.height}x{p.width})" for n, p in probes.items()
                  if (p.height, p.width) != common]
        report.warning(split_dir, f"videos have different frame sizes (most are {common[0]}x{common[1]}); "
                                  f"all frames are resized, but check these: {_file_list(others)}")
    if image_size is not None:
        small = [paths[n].name for n, p in probes.items() if min(p.height, p.width) < image_size]
        if small:
            report.warning(split_dir, f"frames smaller than image_size={image_size} are upsampled: "
                                      f"{_file_list(small)}")

    headers = _check_annotations(report, root, split, seen, probes, require_annotations)
    usable = [name for name in probes if headers.get(name, "bad") != "bad"]
    keys, dropped = common_annotation_keys([headers[name] for name in usable])  # type: ignore[misc]
    report.annotation_keys[split] = keys
    # Videos without any annotation file were reported one by one above; report dropped arrays only otherwise.
    if usable and all(headers[name] is not None for name in usable):
        for key, reason in dropped.items():
            report.warning(root / ANNOTATION_DIR / split,
                           f"annotation '{key}' is not used for split '{split}': {reason}")
    for name in usable:
        probe = probes[name]
        identity, clip = split_identity(name)
        report.records[split].append(
            VideoRecord(
                path=paths[name], name=name, identity=identity, clip=clip, split=split,
                num_frames=probe.num_frames, height=probe.height, width=probe.width,
                annotation=annotation_path(root, split, name) if headers[name] is not None else None,
            )
        )


def _check_annotations(
    report: DatasetReport, root: Path, split: str, videos: dict[str, Path], probes: dict[str, VideoProbe],
    require_annotations: bool,
) -> dict[str, dict | None | str]:
    """Validate ``annotations/<split>/*.npz`` -> name -> header, ``None`` (no file) or ``"bad"`` (error)."""
    headers: dict[str, dict | None | str] = {}
    annotation_dir = root / ANNOTATION_DIR / split
    missing: list[str] = []
    for name, video in videos.items():
        path = annotation_path(root, split, name)
        if not path.is_file():
            headers[name] = None
            missing.append(name)
            continue
        try:
            header = read_npz_header(path)
        except ValueError as error:
            report.error(path, _strip_path(str(error), path))
            headers[name] = "bad"
            continue
        probe = probes.get(name)
        errors, warnings = validate_annotation_header(header, probe.num_frames if probe else None)
        for message in errors:
            report.error(path, f"{message} (video {video.name})")
        for message in warnings:
            report.warning(path, message)
        headers[name] = "bad" if errors else header
    annotated = len(videos) - len(missing)
    for name in missing:
        path = annotation_path(root, split, name)
        if require_annotations:
            report.error(videos[name], f"annotation file {path} is missing (annotations are required)")
        elif annotated:
            report.warning(videos[name], f"annotation file {path} is missing while {annotated} other "
                                         f"video(s) of '{split}' have one; the split is used unannotated")
    if annotation_dir.is_dir():
        for path in sorted(annotation_dir.glob("*.npz")):
            if path.stem not in videos and not path.name.startswith("."):
                report.warning(path, f"annotation file without a video in '{split}/'")
    return headers
