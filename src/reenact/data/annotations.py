"""The annotated frames of a DataModule's training split, for the models that fit something to them before
training: LPMM's landmark basis and pose map (paper 004 Sec. 3.1), PECHead's learned expression basis
(:mod:`reenact.face.expression_basis`).

Frames an annotation marks ``detected = 0`` (their landmarks are copied from the nearest detected frame) are
left out: they would teach a basis a face that was never seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from reenact.data.datasets import scale_landmarks


@dataclass
class AnnotatedFrames:
    """Attributes: ``landmarks [N, 68, 2]`` pixels of ``image_size`` frames; ``pose [N, 3]`` yaw/pitch/roll
    degrees (``None`` unless every annotation carries it); ``video [N]`` index of each frame's video."""

    landmarks: torch.Tensor
    pose: torch.Tensor | None
    video: torch.Tensor


def annotated_training_frames(datamodule: Any, image_size: int, who: str, max_frames: int | None = None
                              ) -> AnnotatedFrames:
    """Every annotated, detected frame of ``datamodule``'s training split (:class:`AnnotatedFrames`).

    Args:
        datamodule: a set-up :class:`reenact.data.ReenactDataModule` (``records``, ``annotation_keys``).
        image_size: the model's frame side; landmarks are scaled to it.
        who: what needs them, for the error message (e.g. ``"LPMM builds its landmark basis"``).
        max_frames: keep at most this many, evenly spaced over the split.

    Raises:
        ValueError: the split has no landmark annotations, or no detected frame.
    """
    records = datamodule.records.get("train", [])
    if "landmarks" not in datamodule.annotation_keys.get("train", []):
        raise ValueError(f"{who} from the training split's annotations (annotations/train/<video>.npz with a "
                         "'landmarks' [F, 68, 2] array), and this dataset has none; "
                         f"`reenact data annotate {datamodule._root()}` writes them with the dlib landmark "
                         "backend (or use `reenact data synth` for an annotated dataset)")
    landmark_arrays, pose_arrays, video_arrays = [], [], []
    for index, record in enumerate(records):
        with np.load(record.annotation, allow_pickle=False) as data:
            keep = (np.asarray(data["detected"]).astype(bool) if "detected" in data.files
                    else np.ones(len(data["landmarks"]), dtype=bool))
            landmark_arrays.append(scale_landmarks(data["landmarks"][keep], record.height, record.width, image_size))
            pose_arrays.append(torch.as_tensor(np.asarray(data["pose"], np.float32)[keep])
                               if "pose" in data.files else None)
            video_arrays.append(torch.full((int(keep.sum()),), index, dtype=torch.long))
    landmarks = torch.cat(landmark_arrays, 0) if landmark_arrays else torch.zeros(0, 68, 2)
    if landmarks.shape[0] == 0:
        raise ValueError("no training frame has a detected face (every annotation has detected = 0)")
    pose = torch.cat(pose_arrays, 0) if all(p is not None for p in pose_arrays) else None
    video = torch.cat(video_arrays, 0)
    if max_frames is not None and landmarks.shape[0] > max_frames:
        chosen = torch.linspace(0, landmarks.shape[0] - 1, max_frames).round().long()
        landmarks, video = landmarks[chosen], video[chosen]
        pose = pose[chosen] if pose is not None else None
    return AnnotatedFrames(landmarks=landmarks, pose=pose, video=video)


__all__ = ["AnnotatedFrames", "annotated_training_frames"]
