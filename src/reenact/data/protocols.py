"""Evaluation protocols: one whole video per item, so every run evaluates exactly the same frames.

Same-identity reconstruction (FOMM): the source is frame 0 of a test video and the driving frames are all of
its frames (frame 0 included), optionally the first ``max_frames``; the model must reconstruct the driving
frames. Cross-identity reenactment: the source is frame 0 of one video and the driving frames come from a
video of another identity; the pairs are drawn once from a seed and saved as JSON so different runs and
models are scored on the same pairs.

Item keys (``T`` driving frames, ``H = W = image_size``):

=========================  ======================  ====================================================
``source``                 float32 [1, 3, H, W]    frame 0 of ``source_video``, RGB in [0, 1]
``driving``                float32 [T, 3, H, W]    frames 0..T-1 of ``driving_video``
``source_index``           int64 [1]               always ``[0]``
``driving_index``          int64 [T]               ``0..T-1``
``source_landmarks`` ...   as in training          annotations of the split (landmarks, pose, expression)
``driving_landmarks`` ...                          when every video has them; landmarks in output pixels
``video``                  str                     same identity: the video name; cross identity:
                                                   ``"<source_video>__<driving_video>"``
``source_video``           str                     name of the source video
``driving_video``          str                     name of the driving video
``source_identity``        str                     identity of the source video
``driving_identity``       str                     identity of the driving video
``protocol``               str                     ``"same_identity"`` or ``"cross_identity"``
=========================  ======================  ====================================================

Items have different ``T``, so evaluation loaders use ``batch_size=1`` and :func:`collate_single`, which adds
the batch dimension: ``source`` [1, 1, 3, H, W], ``driving`` [1, T, 3, H, W], strings become 1-element lists.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset
from torch.utils.data._utils.collate import default_collate

from reenact.data.datasets import load_clip, split_annotation_keys
from reenact.data.discovery import DatasetError, VideoRecord

__all__ = [
    "PROTOCOLS",
    "CrossIdentityDataset",
    "SameIdentityDataset",
    "collate_single",
    "load_pairs",
    "make_cross_identity_pairs",
    "save_pairs",
    "SOURCE_PLACEMENTS",
    "driving_indices",
    "select_evenly",
    "source_indices",
]

PROTOCOLS = ("same_identity", "cross_identity")
# Below this many candidate pairs, all are enumerated and drawn without replacement; above, pairs are drawn
# by rejection so huge test sets never materialise N^2 pairs.
_ENUMERATE_LIMIT = 200_000


def select_evenly(records: Sequence[VideoRecord], count: int | None) -> list[VideoRecord]:
    """``count`` records spread evenly over the sorted list (all when ``count`` is ``None`` or large enough).

    Spreading instead of taking the first ``count`` covers several identities, since names sort by identity.
    """
    records = list(records)
    if count is None or count >= len(records):
        return records
    if count <= 0:
        return []
    positions = np.unique(np.round(np.linspace(0, len(records) - 1, count)).astype(int))
    return [records[i] for i in positions]


#: Where the sources of an evaluation item lie: ``"spread"`` (frame 0, then ``i * F / n``) or ``"ends"``
#: (FSRT Sec. 4.1: frame 0, plus the last frame for two sources).
SOURCE_PLACEMENTS = ("spread", "ends")


def source_indices(record: VideoRecord, num_sources: int, placement: str = "spread") -> list[int]:
    """Source frames of an evaluation item (see :data:`SOURCE_PLACEMENTS`).

    ``"spread"``: frame 0, then frames spread evenly over the video, e.g. 0 and F/2 for two sources (FOMM
    uses one: frame 0). ``"ends"`` (FSRT Sec. 4.1, "the source image is selected as the first frame ... In the
    case of two source images, we also select the last frame"): 0 and F-1; more sources lie evenly between.
    """
    if num_sources < 1:
        raise ValueError(f"num_sources must be >= 1, got {num_sources}")
    if placement not in SOURCE_PLACEMENTS:
        raise ValueError(f"source placement must be one of {SOURCE_PLACEMENTS}, got {placement!r}")
    if placement == "ends" and num_sources > 1:
        return [int(round(i * (record.num_frames - 1) / (num_sources - 1))) for i in range(num_sources)]
    return [int(i * record.num_frames // num_sources) for i in range(num_sources)]


def driving_indices(record: VideoRecord, max_frames: int | None, sources: Sequence[int], stride: int = 1,
                    min_source_distance: int = 0) -> list[int]:
    """Driving frames of an evaluation item: every ``stride``-th frame ``0, stride, 2 * stride, ...`` at least
    ``min_source_distance`` frames from every source frame, at most ``max_frames`` of them.

    ``stride=1, min_source_distance=0`` is FOMM's protocol (every frame, frame 0 included); ``stride=10,
    min_source_distance=10`` with ``"ends"`` sources is FSRT's (Sec. 4.1: "We then reconstruct every tenth frame
    within the video, ensuring that each driving frame is at least ten frames apart from the closest source").
    """
    if stride < 1 or min_source_distance < 0:
        raise ValueError(f"stride must be >= 1 and min_source_distance >= 0, got {stride}, {min_source_distance}")
    frames = [i for i in range(0, record.num_frames, stride)
              if all(abs(i - s) >= min_source_distance for s in sources)]
    return frames if max_frames is None else frames[:max_frames]


class _ProtocolDataset(Dataset):
    def __init__(self, records: Sequence[VideoRecord], image_size: int, max_frames: int | None,
                 annotation_keys: Sequence[str] | None, num_sources: int = 1, frame_stride: int = 1,
                 min_source_distance: int = 0, source_placement: str = "spread") -> None:
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if num_sources < 1:
            raise ValueError(f"num_sources must be >= 1, got {num_sources}")
        if source_placement not in SOURCE_PLACEMENTS:
            raise ValueError(f"source_placement must be one of {SOURCE_PLACEMENTS}, got {source_placement!r}")
        if frame_stride < 1 or min_source_distance < 0:
            raise ValueError("frame_stride must be >= 1 and min_source_distance >= 0, got "
                             f"{frame_stride}, {min_source_distance}")
        self.num_sources = num_sources
        self.frame_stride = frame_stride
        self.min_source_distance = min_source_distance
        self.source_placement = source_placement
        self.image_size = int(image_size)
        self.max_frames = max_frames
        self.annotation_keys = (
            split_annotation_keys(records) if annotation_keys is None else list(annotation_keys)
        )

    def _item(self, source: VideoRecord, driving: VideoRecord, protocol: str, video: str) -> dict[str, Any]:
        item: dict[str, Any] = {}
        sources = source_indices(source, self.num_sources, self.source_placement)
        # Cross identity: the distance rule is applied within the driving video (to its own source positions),
        # so a driving video contributes the same frames as in the same-identity protocol.
        driving_sources = source_indices(driving, self.num_sources, self.source_placement)
        frames = driving_indices(driving, self.max_frames, driving_sources, self.frame_stride,
                                 self.min_source_distance)
        if not frames:
            raise DatasetError(f"{driving.name}: no driving frame left ({driving.num_frames} frames, every "
                               f"{self.frame_stride}th at least {self.min_source_distance} from the sources)")
        item.update(load_clip(source, sources, self.image_size, self.annotation_keys, prefix="source"))
        item.update(load_clip(driving, frames, self.image_size, self.annotation_keys, prefix="driving"))
        item.update(video=video, source_video=source.name, driving_video=driving.name,
                    source_identity=source.identity, driving_identity=driving.identity, protocol=protocol)
        return item


class SameIdentityDataset(_ProtocolDataset):
    """Same-identity reconstruction: one item per video (see the module docstring for keys and shapes).

    Args:
        records: the split's videos, in evaluation order.
        image_size: square output size.
        max_frames: evaluate at most the first ``max_frames`` frames of each video.
        max_videos: evaluate at most this many videos, spread evenly over ``records``.
        annotation_keys: annotations to load; ``None`` picks those every record of ``records`` provides.
    """

    protocol = "same_identity"

    def __init__(self, records: Sequence[VideoRecord], image_size: int = 64, max_frames: int | None = None,
                 max_videos: int | None = None, annotation_keys: Sequence[str] | None = None,
                 num_sources: int = 1, frame_stride: int = 1, min_source_distance: int = 0,
                 source_placement: str = "spread") -> None:
        super().__init__(records, image_size, max_frames, annotation_keys, num_sources, frame_stride,
                         min_source_distance, source_placement)
        self.records = select_evenly(records, max_videos)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        return self._item(record, record, self.protocol, record.name)


class CrossIdentityDataset(_ProtocolDataset):
    """Cross-identity reenactment: one item per ``(source video, driving video)`` pair of two identities.

    Args:
        records: the split's videos; every name in ``pairs`` must be among them.
        pairs: ``(source name, driving name)`` pairs, e.g. from :func:`make_cross_identity_pairs`.
        image_size, max_frames, annotation_keys: as for :class:`SameIdentityDataset`.

    Raises :class:`DatasetError` listing pairs that name unknown videos or share an identity.
    """

    protocol = "cross_identity"

    def __init__(self, records: Sequence[VideoRecord], pairs: Sequence[tuple[str, str]], image_size: int = 64,
                 max_frames: int | None = None, annotation_keys: Sequence[str] | None = None,
                 num_sources: int = 1, frame_stride: int = 1, min_source_distance: int = 0,
                 source_placement: str = "spread") -> None:
        super().__init__(records, image_size, max_frames, annotation_keys, num_sources, frame_stride,
                         min_source_distance, source_placement)
        by_name = {record.name: record for record in records}
        problems = []
        self.pairs: list[tuple[VideoRecord, VideoRecord]] = []
        for source, driving in pairs:
            unknown = [name for name in (source, driving) if name not in by_name]
            if unknown:
                missing = ", ".join(map(repr, unknown))
                problems.append(f"pair ({source!r}, {driving!r}): no video named {missing}")
            elif by_name[source].identity == by_name[driving].identity:
                problems.append(f"pair ({source!r}, {driving!r}): both videos show identity "
                                f"{by_name[source].identity!r}")
            else:
                self.pairs.append((by_name[source], by_name[driving]))
        if problems:
            raise DatasetError(f"{len(problems)} invalid cross-identity pair(s):\n"
                               + "\n".join(f"  - {p}" for p in problems))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        source, driving = self.pairs[index]
        return self._item(source, driving, self.protocol, f"{source.name}__{driving.name}")


def make_cross_identity_pairs(
    records: Sequence[VideoRecord], num_pairs: int, seed: int = 0
) -> list[tuple[str, str]]:
    """``num_pairs`` distinct ``(source, driving)`` video-name pairs of different identities.

    Deterministic in ``(set of video names, num_pairs, seed)`` whatever the order of ``records``. Returns
    every possible pair (shuffled) when fewer than ``num_pairs`` exist, and ``[]`` for a single identity.
    """
    ordered = sorted(records, key=lambda record: record.name)
    names = [record.name for record in ordered]
    ids = [record.identity for record in ordered]
    per_identity = Counter(ids)
    total = sum(len(ordered) - per_identity[identity] for identity in ids)
    if total == 0 or num_pairs <= 0:
        return []
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x5EED])
    if total <= max(_ENUMERATE_LIMIT, num_pairs):
        candidates = [(s, d) for s in range(len(names)) for d in range(len(names)) if ids[s] != ids[d]]
        chosen = rng.permutation(len(candidates))[: min(num_pairs, len(candidates))]
        return [(names[candidates[i][0]], names[candidates[i][1]]) for i in chosen]
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[int, int]] = set()
    while len(pairs) < num_pairs:
        source, driving = (int(v) for v in rng.integers(0, len(names), size=2))
        if ids[source] == ids[driving] or (source, driving) in seen:
            continue
        seen.add((source, driving))
        pairs.append((names[source], names[driving]))
    return pairs


def save_pairs(path: str | Path, pairs: Sequence[tuple[str, str]], **info: Any) -> Path:
    """Write pairs as JSON ``{"protocol": "cross_identity", **info, "pairs": [{"source", "driving"}...]}``.

    ``info`` records how the pairs were made (``seed``, ``split``, ``root``...) for the reader of results.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"protocol": "cross_identity", **info,
               "pairs": [{"source": source, "driving": driving} for source, driving in pairs]}
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    temporary.replace(path)
    return path


def load_pairs(path: str | Path) -> list[tuple[str, str]]:
    """Read pairs written by :func:`save_pairs`; a bare list of ``[source, driving]`` lists is accepted too.

    Raises :class:`DatasetError` naming ``path`` when it is missing or malformed.
    """
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path}: cannot read cross-identity pairs ({error})") from error
    entries = payload.get("pairs") if isinstance(payload, dict) else payload
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: expected a list of pairs or an object with a 'pairs' list")
    pairs: list[tuple[str, str]] = []
    for position, entry in enumerate(entries):
        if isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in ("source", "driving")):
            pairs.append((entry["source"], entry["driving"]))
        elif isinstance(entry, (list, tuple)) and len(entry) == 2 and all(isinstance(v, str) for v in entry):
            pairs.append((entry[0], entry[1]))
        else:
            raise DatasetError(f"{path}: pair {position} is {entry!r}, expected "
                               "{'source': str, 'driving': str}")
    return pairs


def collate_single(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate one evaluation item: adds the batch dimension (``[1, ...]`` tensors, 1-item string lists)."""
    if len(batch) != 1:
        raise ValueError(f"evaluation items have different frame counts; use batch_size=1 (got {len(batch)})")
    return default_collate(batch)
