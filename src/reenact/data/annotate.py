"""Annotate a FOMM-layout dataset with a landmark backend: 68 landmarks and head pose per frame.

Real datasets (VoxCeleb, your own videos) come without the ground truth the synthetic data carries. Models
that learn from landmarks (LPMM's basis and regressor, FSRT's keypoint pretraining, PECHead's face-shape
reconstructor) read ``annotations/<split>/<video>.npz``; this module writes those files in the same layout:

* ``landmarks`` float32 [F, 68, 2]: the backend's 68 points in pixels of the stored frames;
* ``pose`` float32 [F, 3]: yaw, pitch, roll in degrees from fitting the shared 3D face model
  (:func:`reenact.face.pose.fit_pose`);
* ``detected`` uint8 [F]: 1 where a face was found; frames without a detection take the landmarks of the
  nearest detected frame (0 there), so every array stays dense.

A video in which no frame has a face gets no file and is listed in the summary. Files are written atomically
and existing ones are kept unless ``overwrite`` is set, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reenact.data.discovery import annotation_path, discover
from reenact.data.video import atomic_path, read_video


@dataclass
class AnnotationSummary:
    """What :func:`annotate_dataset` did, per video name."""

    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    detection_rate: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"written": self.written, "kept": self.kept, "no_face": self.no_face,
                "detection_rate": self.detection_rate}


def fill_missing(landmarks: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-frame detections (``[68, 2]`` or ``None``) -> dense ``[F, 68, 2]`` and ``detected [F]`` uint8, each
    missing frame taking its nearest detected frame; ``None`` when no frame was detected."""
    found = [i for i, points in enumerate(landmarks) if points is not None]
    if not found:
        return None
    found_array = np.array(found)
    dense = np.stack([landmarks[found_array[np.abs(found_array - i).argmin()]] for i in range(len(landmarks))])
    detected = np.array([points is not None for points in landmarks], dtype=np.uint8)
    return dense.astype(np.float32), detected


def annotate_video(path: Path, backend: str = "dlib") -> dict[str, np.ndarray] | None:
    """Landmarks, pose and detection flags of one video (``None`` when no frame shows a face)."""
    from reenact.face.landmarks import get_landmark_backend
    from reenact.face.pose import fit_pose

    detector = get_landmark_backend(backend)
    frames = read_video(path)
    filled = fill_missing([detector.detect(frame) for frame in frames])
    if filled is None:
        return None
    landmarks, detected = filled
    pose = fit_pose(landmarks).pose
    return {"landmarks": landmarks, "pose": np.asarray(pose, dtype=np.float32), "detected": detected}


def annotate_dataset(root: str | Path, *, backend: str = "dlib", splits: tuple[str, ...] = ("train", "val", "test"),
                     overwrite: bool = False, on_video: Callable[[Path], None] | None = None) -> AnnotationSummary:
    """Write ``annotations/<split>/<video>.npz`` for every video of ``root`` (see the module docstring).

    Raises :class:`~reenact.data.discovery.DatasetError` (naming the files) before any work when a split is
    unusable, and ``RuntimeError`` when the landmark backend is unavailable here.
    """
    from reenact.face.landmarks import get_landmark_backend

    reason = get_landmark_backend(backend).unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"landmark backend {backend!r} is unavailable: {reason}")
    root = Path(root)
    records = [record for split in splits if (root / split).is_dir() for record in discover(root, split)]
    summary = AnnotationSummary()
    for record in records:
        target = annotation_path(root, record.split, record.name)
        if target.exists() and not overwrite:
            summary.kept.append(record.name)
        else:
            arrays = annotate_video(record.path, backend)
            if arrays is None:
                summary.no_face.append(record.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(target) as temporary, open(temporary, "wb") as handle:
                    np.savez(handle, **arrays)
                summary.written.append(record.name)
                summary.detection_rate[record.name] = float(arrays["detected"].mean())
        if on_video is not None:
            on_video(record.path)
    return summary
