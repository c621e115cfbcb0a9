"""Training datasets: frames of one video, sampled as pairs, windows or multi-source sets.

Every sample is a dict (``S`` source frames, ``T`` driving frames, ``H = W = image_size``):

=======================  ======================  ======================================================
key                      shape / type            meaning
=======================  ======================  ======================================================
``source``               float32 [S, 3, H, W]    RGB in [0, 1], resized (bilinear, antialiased)
``driving``              float32 [T, 3, H, W]    RGB in [0, 1], same video as ``source``
``source_index``         int64 [S]               frame indices in the stored video
``driving_index``        int64 [T]
``identity``             int64 []                index of the identity among the split's sorted identities
``video``                str                     video name
``source_landmarks``     float32 [S, 68, 2]      iBUG-68 (x, y) in pixels of the H x W output (optional)
``driving_landmarks``    float32 [T, 68, 2]      (optional)
``source_pose``          float32 [S, 3]          yaw, pitch, roll in degrees (optional)
``driving_pose``         float32 [T, 3]          (optional)
``source_expression``    float32 [S, E]          expression coefficients (optional)
``driving_expression``   float32 [T, E]          (optional)
=======================  ======================  ======================================================

Optional keys appear when *every* video of the split has that annotation array (see
:func:`reenact.data.discovery.common_annotation_keys`), so default collation never meets a key in some samples
only; batches then have shapes ``[B, S, 3, H, W]``, ``[B, T, 68, 2]``, ``[B]`` and ``list[str]``.

Sampling modes (:class:`SamplingSpec`):
    ``pair``: one source and one driving frame, two distinct random frames (FOMM, LIA).
    ``sequence``: ``S`` adjacent source frames and ``T`` adjacent driving frames, both windows at random
        positions (PECHead, ``S = T = 5``); the video needs ``max(S, T)`` frames.
    ``multi_source``: ``S`` source frames and ``T`` (default 1) driving frames, all distinct when the video is
        long enough, otherwise the sources repeat frames (never a driving one) (FSRT).

Randomness (frame choice and augmentation) comes from one generator per sample seeded with
``(seed, epoch, index)``. Samplers of this module yield ``(epoch, index)`` pairs so the epoch reaches
persistent DataLoader workers too; a plain integer index uses the epoch last given to :meth:`set_epoch`.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from reenact.data.augment import AugmentConfig, apply_augment, sample_params
from reenact.data.discovery import (
    SAMPLE_ANNOTATION_KEYS,
    VideoRecord,
    common_annotation_keys,
    identities,
    read_npz_header,
)
from reenact.data.video import VideoReadError, frame_files, read_image, read_video

__all__ = [
    "MODES",
    "MultiSourceDataset",
    "PairDataset",
    "SamplingSpec",
    "SequenceDataset",
    "TrainingDataset",
    "load_clip",
    "resize_frames",
    "sample_rng",
    "scale_landmarks",
    "split_annotation_keys",
]

MODES = ("pair", "sequence", "multi_source")
_DEFAULT_COUNTS = {"pair": (1, 1), "sequence": (5, 5), "multi_source": (2, 1)}


@dataclass(frozen=True)
class SamplingSpec:
    """How a model wants its training samples: ``mode`` and the number of source/driving frames.

    ``None`` counts take the mode's defaults: pair (1, 1), sequence (5, 5), multi_source (2, 1).
    Models expose one as ``train_sampling``; the data module reads it when ``--data.sampling`` is not given.
    """

    mode: str = "pair"
    num_source: int | None = None
    num_driving: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown sampling mode {self.mode!r}; expected one of {MODES}")
        default_source, default_driving = _DEFAULT_COUNTS[self.mode]
        source = default_source if self.num_source is None else int(self.num_source)
        driving = default_driving if self.num_driving is None else int(self.num_driving)
        # Frozen dataclass: defaults are filled in once, here.
        object.__setattr__(self, "num_source", source)
        object.__setattr__(self, "num_driving", driving)
        if self.num_source < 1 or self.num_driving < 1:
            raise ValueError(f"num_source and num_driving must be >= 1, got {self.num_source}, "
                             f"{self.num_driving}")
        if self.mode == "pair" and (self.num_source, self.num_driving) != (1, 1):
            raise ValueError("pair sampling uses exactly one source and one driving frame; use "
                             f"'multi_source' or 'sequence' for {self.num_source} source / "
                             f"{self.num_driving} driving frames")

    @property
    def min_frames(self) -> int:
        """Fewest frames a video needs for this mode."""
        if self.mode == "sequence":
            return max(self.num_source, self.num_driving)
        return self.num_driving + 1

    @classmethod
    def parse(cls, value: Any, num_source: int | None = None, num_driving: int | None = None) -> SamplingSpec:
        """A :class:`SamplingSpec`, a mode string or any object with ``mode``/``num_source``/``num_driving``
        attributes -> :class:`SamplingSpec`; explicit ``num_source``/``num_driving`` override its counts."""
        if isinstance(value, str):
            mode, source, driving = value, None, None
        elif isinstance(value, dict):
            mode = value.get("mode", "pair")
            source, driving = value.get("num_source"), value.get("num_driving")
        else:
            mode = getattr(value, "mode", None)
            if mode is None:
                raise TypeError(f"cannot read a sampling spec from {value!r}")
            source, driving = getattr(value, "num_source", None), getattr(value, "num_driving", None)
        return cls(
            str(mode),
            num_source if num_source is not None else source,
            num_driving if num_driving is not None else driving,
        )


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample; it depends on ``(seed, epoch, index)`` only: workers and ranks agree."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


# --------------------------------------------------------------------------------------------- frame access
class _DecodedVideoCache:
    """Least-recently-used cache of fully decoded video files, bounded in bytes, one per process.

    Container formats cannot seek to a frame cheaply and reliably, so a video file is decoded whole; small
    training clips are drawn many times per epoch (``repeats``), and decoding once saves most of the time.
    Frame folders are not cached: reading the two or three needed PNGs is already cheap.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, path: Path) -> np.ndarray:
        key = str(path)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        frames = read_video(path)
        frames.setflags(write=False)
        with self._lock:
            if key not in self._items and frames.nbytes <= self.max_bytes:
                self._items[key] = frames
                self._bytes += frames.nbytes
                while self._bytes > self.max_bytes:
                    _, evicted = self._items.popitem(last=False)
                    self._bytes -= evicted.nbytes
        return frames


# Every DataLoader worker holds its own cache, so the budget is per process; REENACT_VIDEO_CACHE_MB=0 turns
# caching off.
_CACHE_MB = float(os.environ.get("REENACT_VIDEO_CACHE_MB", "256"))
VIDEO_CACHE = _DecodedVideoCache(max_bytes=int(_CACHE_MB * 2**20))
_FOLDER_FILES: dict[str, list[Path]] = {}


def read_frames(record: VideoRecord, indices: Sequence[int]) -> np.ndarray:
    """Frames ``indices`` of a video -> uint8 ``[K, H, W, 3]`` RGB (in the order given, repeats allowed).

    Raises :class:`VideoReadError` naming the file when a frame cannot be read or the video has changed
    since discovery (fewer frames or another size than recorded).
    """
    path = Path(record.path)
    if path.is_dir():
        files = _FOLDER_FILES.get(str(path))
        if files is None:
            files = _FOLDER_FILES[str(path)] = frame_files(path)
        if max(indices) >= len(files):
            raise VideoReadError(f"{path}: frame {max(indices)} requested but the folder holds {len(files)}")
        frames = np.stack([read_image(files[i]) for i in indices])
    else:
        video = VIDEO_CACHE.get(path)
        if max(indices) >= len(video):
            raise VideoReadError(f"{path}: frame {max(indices)} requested but only {len(video)} decode")
        frames = video[np.asarray(indices)]
    if frames.shape[1:3] != (record.height, record.width):
        raise VideoReadError(f"{path}: frames are {frames.shape[1]}x{frames.shape[2]}, discovery found "
                             f"{record.height}x{record.width}; the dataset changed during the run")
    return frames


def resize_frames(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """uint8 ``[K, H, W, 3]`` -> float32 ``[K, 3, S, S]`` in [0, 1] with ``S = image_size`` (antialiased)."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    if tensor.shape[-2:] != (image_size, image_size):
        tensor = F.interpolate(tensor, size=(image_size, image_size), mode="bilinear", align_corners=False,
                               antialias=True).clamp_(0.0, 1.0)
    return tensor.contiguous()


def scale_landmarks(
    landmarks: np.ndarray | torch.Tensor, height: int, width: int, image_size: int
) -> torch.Tensor:
    """Landmarks ``[..., 2]`` (x, y) in pixels of an ``height x width`` frame -> pixels of the square output.

    Pixel centres sit at integer coordinates, as in ``F.interpolate(align_corners=False)``, so a point keeps
    its place in the picture: ``x' = (x + 0.5) * image_size / width - 0.5``.
    """
    points = torch.as_tensor(np.asarray(landmarks, dtype=np.float32)).clone()
    points[..., 0] = (points[..., 0] + 0.5) * (image_size / width) - 0.5
    points[..., 1] = (points[..., 1] + 0.5) * (image_size / height) - 0.5
    return points


def split_annotation_keys(records: Sequence[VideoRecord]) -> list[str]:
    """The per-frame annotation arrays every record provides with the same shape (see module docstring)."""
    if not records or any(record.annotation is None for record in records):
        return []
    headers = []
    for record in records:
        try:
            headers.append(read_npz_header(record.annotation))
        except ValueError:
            # An unreadable file means the key set is not common; check_dataset reports the file itself.
            return []
    keys, _ = common_annotation_keys(headers)
    return keys


def load_clip(
    record: VideoRecord, indices: Sequence[int], image_size: int, annotation_keys: Sequence[str] = (),
    prefix: str = "",
) -> dict[str, torch.Tensor]:
    """Frames ``indices`` of ``record`` plus their annotations, keyed ``prefix`` + name.

    Returns ``{prefix: float32 [K, 3, S, S], prefix_index: int64 [K], prefix_landmarks: [K, 68, 2] (output
    pixels), prefix_pose: [K, 3], prefix_expression: [K, E]}``, annotation keys only for ``annotation_keys``.
    With ``prefix=""`` the keys are ``frames``, ``index``, ``landmarks``...
    """
    head = prefix or "frames"
    sep = "_" if prefix else ""
    out: dict[str, torch.Tensor] = {
        head: resize_frames(read_frames(record, indices), image_size),
        f"{prefix}{sep}index": torch.as_tensor(np.asarray(indices, dtype=np.int64)),
    }
    if annotation_keys:
        if record.annotation is None:
            raise VideoReadError(f"{record.path}: annotations {list(annotation_keys)} expected, none found")
        selector = np.asarray(indices)
        with np.load(record.annotation, allow_pickle=False) as data:
            for key in annotation_keys:
                values = np.asarray(data[key][selector], dtype=np.float32)
                if key == "landmarks":
                    values = scale_landmarks(values, record.height, record.width, image_size)
                    out[f"{prefix}{sep}{key}"] = values
                else:
                    out[f"{prefix}{sep}{key}"] = torch.from_numpy(values)
    return out


# --------------------------------------------------------------------------------------------- datasets
class TrainingDataset(Dataset):
    """Random training samples from videos of one split (see the module docstring for keys and modes).

    Args:
        records: the split's videos (from :func:`reenact.data.discovery.discover` or ``check_dataset``).
        mode: ``"pair"``, ``"sequence"`` or ``"multi_source"``.
        num_source, num_driving: frame counts; ``None`` takes the mode's default.
        image_size: square output size ``H = W``.
        augment: ``True`` for FOMM's flip + jitter, an :class:`AugmentConfig`, or ``False``/``None``.
        repeats: every video appears this many times per epoch (FOMM's ``num_repeats``).
        seed: base seed; the sample at ``(epoch, index)`` is a pure function of ``(seed, epoch, index)``.
        annotation_keys: per-frame annotations to load; ``None`` picks those every record provides.
        balance: ``"video"`` (FOMM): every video equally often; ``"identity"``: every identity equally often,
            a random one of its videos each time (FSRT's option for VoxCeleb, whose identities have very
            different numbers of clips). The epoch has ``len(records) * repeats`` samples either way.

    Raises ``ValueError`` naming the videos too short for the mode, and when ``records`` is empty.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        mode: str = "pair",
        num_source: int | None = None,
        num_driving: int | None = None,
        image_size: int = 64,
        augment: bool | AugmentConfig | None = True,
        repeats: int = 1,
        seed: int = 0,
        annotation_keys: Sequence[str] | None = None,
        balance: str = "video",
    ) -> None:
        self.spec = SamplingSpec(mode, num_source, num_driving)
        self.records = list(records)
        if not self.records:
            raise ValueError("TrainingDataset needs at least one video")
        spec = self.spec
        short = [f"{r.path} ({r.num_frames} frames)" for r in self.records if r.num_frames < spec.min_frames]
        if short:
            raise ValueError(f"{spec.mode} sampling with {spec.num_source} source / {spec.num_driving} "
                             f"driving frames needs {spec.min_frames} frames per video; too short: "
                             + ", ".join(short))
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {repeats}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.image_size = int(image_size)
        self.augment: AugmentConfig | None = AugmentConfig() if augment is True else (augment or None)
        self.repeats = int(repeats)
        self.seed = int(seed)
        self.epoch = 0
        self.annotation_keys = (
            split_annotation_keys(self.records) if annotation_keys is None else list(annotation_keys)
        )
        unknown = set(self.annotation_keys) - set(SAMPLE_ANNOTATION_KEYS)
        if unknown:
            raise ValueError(f"unknown annotation keys {sorted(unknown)}; expected a subset of "
                             f"{SAMPLE_ANNOTATION_KEYS}")
        self.identities = identities(self.records)
        self._identity_index = {identity: i for i, identity in enumerate(self.identities)}
        if balance not in ("video", "identity"):
            raise ValueError(f"balance must be 'video' or 'identity', got {balance!r}")
        self.balance = balance
        self._videos_of = {identity: [r for r in self.records if r.identity == identity]
                           for identity in self.identities}

    @property
    def mode(self) -> str:
        return self.spec.mode

    def __len__(self) -> int:
        return len(self.records) * self.repeats

    def set_epoch(self, epoch: int) -> None:
        """Epoch for plain integer indices (samplers of this module pass it with every index instead)."""
        self.epoch = int(epoch)

    def choose_frames(self, num_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Source ``[S]`` and driving ``[T]`` frame indices for a video of ``num_frames`` frames."""
        spec = self.spec
        if spec.mode == "pair":
            source, driving = rng.choice(num_frames, size=2, replace=False)
            return np.array([source]), np.array([driving])
        if spec.mode == "sequence":
            source_start = int(rng.integers(0, num_frames - spec.num_source + 1))
            driving_start = int(rng.integers(0, num_frames - spec.num_driving + 1))
            return (np.arange(source_start, source_start + spec.num_source),
                    np.arange(driving_start, driving_start + spec.num_driving))
        if num_frames >= spec.num_source + spec.num_driving:
            chosen = rng.choice(num_frames, size=spec.num_source + spec.num_driving, replace=False)
            return np.sort(chosen[spec.num_driving:]), chosen[: spec.num_driving]
        # Too short for distinct frames: keep the driving frames out of the sources, repeat sources instead.
        driving = rng.choice(num_frames, size=spec.num_driving, replace=False)
        rest = np.setdiff1d(np.arange(num_frames), driving)
        return np.sort(rng.choice(rest, size=spec.num_source, replace=True)), driving

    def __getitem__(self, index: int | tuple[int, int]) -> dict[str, Any]:
        if isinstance(index, (tuple, list)):
            epoch, index = int(index[0]), int(index[1])
        else:
            epoch, index = self.epoch, int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        rng = sample_rng(self.seed, epoch, index)
        if self.balance == "identity":
            videos = self._videos_of[self.identities[index % len(self.identities)]]
            record = videos[int(rng.integers(len(videos)))]
        else:
            record = self.records[index % len(self.records)]
        source_index, driving_index = self.choose_frames(record.num_frames, rng)
        count = len(source_index)
        clip = load_clip(record, np.concatenate([source_index, driving_index]).tolist(), self.image_size,
                         self.annotation_keys)
        sample: dict[str, Any] = {
            "source": clip["frames"][:count],
            "driving": clip["frames"][count:],
            "source_index": clip["index"][:count],
            "driving_index": clip["index"][count:],
            "identity": torch.tensor(self._identity_index[record.identity], dtype=torch.long),
            "video": record.name,
        }
        for key in self.annotation_keys:
            sample[f"source_{key}"] = clip[key][:count]
            sample[f"driving_{key}"] = clip[key][count:]
        if self.augment is not None:
            apply_augment(sample, sample_params(self.augment, rng))
        return sample


class PairDataset(TrainingDataset):
    """``pair`` mode: ``source`` [1, 3, H, W] and ``driving`` [1, 3, H, W], two distinct frames of a video."""

    def __init__(self, records: Sequence[VideoRecord], image_size: int = 64,
                 augment: bool | AugmentConfig | None = True, repeats: int = 1, seed: int = 0) -> None:
        super().__init__(records, "pair", 1, 1, image_size, augment, repeats, seed)


class SequenceDataset(TrainingDataset):
    """``sequence`` mode: ``source`` [T, 3, H, W] and ``driving`` [T, 3, H, W], two random windows of adjacent
    frames of one video (PECHead: ``length=5``); videos need ``length`` frames."""

    def __init__(self, records: Sequence[VideoRecord], length: int = 5, image_size: int = 64,
                 augment: bool | AugmentConfig | None = True, repeats: int = 1, seed: int = 0) -> None:
        super().__init__(records, "sequence", length, length, image_size, augment, repeats, seed)


class MultiSourceDataset(TrainingDataset):
    """``multi_source`` mode: ``source`` [n, 3, H, W] and ``driving`` [1, 3, H, W] of one video (FSRT)."""

    def __init__(self, records: Sequence[VideoRecord], num_source: int = 2, image_size: int = 64,
                 augment: bool | AugmentConfig | None = True, repeats: int = 1, seed: int = 0) -> None:
        super().__init__(records, "multi_source", num_source, 1, image_size, augment, repeats, seed)
