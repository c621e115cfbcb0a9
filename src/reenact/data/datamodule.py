"""``ReenactDataModule``: the one LightningDataModule every model trains and is evaluated with.

* ``setup`` checks the dataset first (:func:`reenact.data.checks.check_dataset`) and raises a
  :class:`~reenact.data.discovery.DatasetError` listing every bad file before any step runs.
* ``train_dataloader`` samples as the model asks (``train_sampling``) unless ``sampling`` overrides it.
* ``val_dataloader``: same-identity reconstruction on ``val/`` (``test/`` when absent), a few videos.
* ``test_dataloader``: two loaders, ``[same_identity, cross_identity]`` on ``test/`` (:attr:`test_protocols`).
* Under DDP, test videos are sharded without padding (:class:`UnpaddedDistributedSampler`), so metrics
  summed over ranks equal single-process ones; training uses a shuffled ``DistributedSampler``. The Trainer
  must run with ``use_distributed_sampler=False`` (the reenact trainer defaults do). Validation inside
  ``fit`` pads shards with flagged repeats (:class:`EvenDistributedSampler`) so ranks stay in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from reenact.data.augment import augment_config
from reenact.data.checks import DatasetReport, check_dataset
from reenact.data.datasets import SamplingSpec, TrainingDataset, split_annotation_keys
from reenact.data.discovery import DatasetError, VideoRecord, discover, identities, read_meta
from reenact.data.protocols import (
    PROTOCOLS,
    SOURCE_PLACEMENTS,
    CrossIdentityDataset,
    SameIdentityDataset,
    collate_single,
    load_pairs,
    make_cross_identity_pairs,
)
from reenact.data.samplers import (
    EpochDistributedSampler,
    EvenDistributedSampler,
    PaddingFlagDataset,
    SeededRandomSampler,
    UnpaddedDistributedSampler,
)

__all__ = ["ReenactDataModule"]

# Evaluation videos are needed at least this long: frame 0 is the source, the rest are worth reconstructing.
_EVAL_MIN_FRAMES = 2
# How many check warnings are spelled out in the console before "and N more".
_WARNING_LINES = 20


def _distributed() -> tuple[int, int] | None:
    """``(world_size, rank)`` inside an initialised multi-process group, else ``None``."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_world_size(), dist.get_rank()
    return None


class ReenactDataModule(L.LightningDataModule):
    """FOMM-layout videos for training and the evaluation protocols.

    Args:
        root: dataset root holding ``train/`` and ``test/`` (and optionally ``val/``, ``annotations/``).
            ``None`` uses the default synthetic dataset (built on first use).
        image_size: side of the square frames, in pixels.
        sampling: training sampling mode, ``"pair"``, ``"sequence"`` or ``"multi_source"``; ``None`` takes the
            model's ``train_sampling``.
        num_source: source frames per training sample (``None``: the model's or the mode's default).
        num_driving: driving frames per training sample (``None``: the model's or the mode's default).
        batch_size: training batch size (evaluation always uses 1 video per batch).
        num_workers: DataLoader worker processes.
        repeats: how many times each training video is sampled per epoch.
        augment: training augmentation: ``True`` (or ``"full"``) FOMM's random horizontal flip and colour jitter,
            ``"flip"`` the flip only (for models that jitter their inputs themselves, e.g. FSRT's A1-A3, so
            each version gets one jitter as in the release), ``False`` (or ``"none"``) nothing.
        balance: training samples per ``"video"`` (FOMM) or per ``"identity"`` (each identity equally often,
            a random one of its videos each time; FSRT's option for datasets with uneven clips per identity).
        seed: seed of training order, frame choice, augmentation and the cross-identity pairs.
        max_frames_per_video: evaluate at most this many frames of each video (``None``: all).
        val_max_videos: validation uses at most this many videos, spread over the split.
        val_max_frames: validation uses at most this many frames per video (``None``: as for test).
        num_cross_identity_pairs: cross-identity pairs drawn for testing.
        cross_identity_pairs: JSON file of pairs to use instead of drawing them (see ``save_pairs``).
        check: check every file before use; ``False`` only counts frames (faster on large datasets, but a
            corrupt frame inside a PNG folder is then found only when read).
        min_frames: shortest usable video in every split; ``None``: what the sampling mode needs for
            ``train/`` and 2 frames for evaluation splits.
        require_annotations: treat videos without an annotation file as errors.
        eval_num_sources: source frames per test item: 1 is FOMM's protocol (frame 0); 2 is FSRT's "2-Src"
            row (frames 0 and F/2 of the source video, see :func:`reenact.data.protocols.source_indices`).
        eval_frame_stride: test every ``eval_frame_stride``-th frame (FSRT Sec. 4.1: every 10th).
        eval_min_source_distance: test only frames at least this far from every source frame (FSRT: 10).
        eval_source_placement: ``"spread"`` (frame 0, then ``i * F / n``) or ``"ends"`` (FSRT Sec. 4.1: frame 0,
            plus the last frame for two sources). FOMM's protocol is the default (1, 0, ``"spread"``); FSRT's is
            ``--data.eval_frame_stride 10 --data.eval_min_source_distance 10 --data.eval_source_placement ends``.
            ``max_frames_per_video`` then caps the number of selected frames.
    """

    def __init__(
        self,
        root: str | None = None,
        image_size: int = 64,
        sampling: str | None = None,
        num_source: int | None = None,
        num_driving: int | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        repeats: int = 1,
        augment: bool | str = True,
        balance: str = "video",
        seed: int = 0,
        max_frames_per_video: int | None = None,
        val_max_videos: int = 4,
        val_max_frames: int | None = 16,
        num_cross_identity_pairs: int = 20,
        cross_identity_pairs: str | None = None,
        check: bool = True,
        min_frames: int | None = None,
        require_annotations: bool = False,
        eval_num_sources: int = 1,
        eval_frame_stride: int = 1,
        eval_min_source_distance: int = 0,
        eval_source_placement: str = "spread",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if image_size < 1 or batch_size < 1 or repeats < 1 or num_workers < 0:
            raise ValueError("image_size, batch_size and repeats must be >= 1 and num_workers >= 0, got "
                             f"{image_size}, {batch_size}, {repeats}, {num_workers}")
        if sampling is not None:
            # Fail at construction (CLI parsing), not at setup, for a misspelt mode or bad counts.
            SamplingSpec.parse(sampling, num_source, num_driving)
        self.root = root
        self.image_size = image_size
        self.sampling = sampling
        self.num_source = num_source
        self.num_driving = num_driving
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.repeats = repeats
        self.augment = augment
        self._augment_config = augment_config(augment)  # a misspelt mode fails here, at CLI parsing
        if balance not in ("video", "identity"):
            raise ValueError(f"balance must be 'video' or 'identity', got {balance!r}")
        self.balance = balance
        self.seed = seed
        self.max_frames_per_video = max_frames_per_video
        self.val_max_videos = val_max_videos
        self.val_max_frames = val_max_frames
        self.num_cross_identity_pairs = num_cross_identity_pairs
        self.cross_identity_pairs = cross_identity_pairs
        self.check = check
        self.min_frames = min_frames
        self.require_annotations = require_annotations
        if eval_num_sources < 1:
            raise ValueError(f"eval_num_sources must be >= 1, got {eval_num_sources}")
        self.eval_num_sources = eval_num_sources
        if eval_frame_stride < 1 or eval_min_source_distance < 0 or eval_source_placement not in SOURCE_PLACEMENTS:
            raise ValueError("eval_frame_stride must be >= 1, eval_min_source_distance >= 0 and "
                             f"eval_source_placement one of {SOURCE_PLACEMENTS}; got {eval_frame_stride}, "
                             f"{eval_min_source_distance}, {eval_source_placement!r}")
        self.eval_protocol_args = {"frame_stride": eval_frame_stride, "min_source_distance": eval_min_source_distance,
                                   "source_placement": eval_source_placement}

        #: Protocol of each test dataloader, in order.
        self.test_protocols: list[str] = list(PROTOCOLS)
        self.sampling_spec: SamplingSpec | None = None
        self.cross_identity_pairs_list: list[tuple[str, str]] | None = None
        self.records: dict[str, list[VideoRecord]] = {}
        self.annotation_keys: dict[str, list[str]] = {}
        self.report: DatasetReport | None = None
        self.train_dataset: TrainingDataset | None = None
        self.val_dataset: SameIdentityDataset | None = None
        self.test_datasets: list[Dataset] | None = None
        self._resolved_root: Path | None = None

    # ----------------------------------------------------------------------------------------- setup
    def _root(self) -> Path:
        if self._resolved_root is None:
            if self.root is None:
                # Imported here: the synthetic generator is optional for users with their own data.
                from reenact.data.synthetic import ensure_default_dataset

                self._resolved_root = Path(ensure_default_dataset())
            else:
                self._resolved_root = Path(self.root).expanduser()
        return self._resolved_root

    @property
    def val_split(self) -> str:
        """``val`` when ``root/val`` exists, else ``test``."""
        return "val" if (self._root() / "val").is_dir() else "test"

    def prepare_data(self) -> None:
        """Build the default synthetic dataset when no root is given (runs once per node)."""
        if self.root is None:
            self._root()

    def resolve_sampling(self) -> SamplingSpec:
        """The training :class:`SamplingSpec`: ``sampling`` if given, else the attached model's
        ``train_sampling`` (``pair`` without a model); ``num_source``/``num_driving`` override the counts."""
        value: Any = self.sampling
        if value is None:
            trainer = self.trainer
            module = getattr(trainer, "lightning_module", None) if trainer is not None else None
            value = getattr(module, "train_sampling", None) or "pair"
        return SamplingSpec.parse(value, self.num_source, self.num_driving)

    def _splits_for(self, stage: str | None) -> list[str]:
        if stage == "fit":
            return ["train", self.val_split]
        if stage == "validate":
            return [self.val_split]
        if stage in ("test", "predict"):
            return ["test"]
        return ["train", self.val_split, "test"]

    def setup(self, stage: str | None = None) -> None:
        """Check and index the splits ``stage`` needs, then build its datasets.

        Raises :class:`~reenact.data.discovery.DatasetError` listing every unusable file, before training.
        """
        root = self._root()
        if stage in ("fit", None):
            self.sampling_spec = self.resolve_sampling()
        needed = list(dict.fromkeys(self._splits_for(stage)))
        self._load_splits([split for split in needed if split not in self.records], root)

        if stage in ("fit", None):
            spec = self.sampling_spec
            self.train_dataset = TrainingDataset(
                self.records["train"], spec.mode, spec.num_source, spec.num_driving, self.image_size,
                self._augment_config, self.repeats, self.seed, annotation_keys=self.annotation_keys["train"],
                balance=self.balance,
            )
        if stage in ("fit", "validate", None):
            split = self.val_split
            caps = [cap for cap in (self.val_max_frames, self.max_frames_per_video) if cap is not None]
            self.val_dataset = SameIdentityDataset(
                self.records[split], self.image_size, max_frames=min(caps) if caps else None,
                max_videos=self.val_max_videos, annotation_keys=self.annotation_keys[split],
                num_sources=self.eval_num_sources, **self.eval_protocol_args,
            )
        if stage in ("test", "predict", None):
            records = self.records["test"]
            if self.cross_identity_pairs is not None:
                self.cross_identity_pairs_list = load_pairs(self.cross_identity_pairs)
            else:
                self.cross_identity_pairs_list = make_cross_identity_pairs(
                    records, self.num_cross_identity_pairs, self.seed
                )
                if not self.cross_identity_pairs_list:
                    rank_zero_warn(f"{root / 'test'}: a single identity, so the cross-identity protocol has "
                                   "no pair")
            keys = self.annotation_keys["test"]
            try:
                cross = CrossIdentityDataset(records, self.cross_identity_pairs_list, self.image_size,
                                             self.max_frames_per_video, annotation_keys=keys,
                                             num_sources=self.eval_num_sources, **self.eval_protocol_args)
            except DatasetError as error:
                raise DatasetError(f"{self.cross_identity_pairs or 'drawn pairs'} against {root / 'test'}: "
                                   f"{error}") from error
            same = SameIdentityDataset(records, self.image_size, self.max_frames_per_video,
                                       annotation_keys=keys, num_sources=self.eval_num_sources,
                                       **self.eval_protocol_args)
            self.test_datasets = [same, cross]

    def _min_frames(self, split: str) -> int:
        if self.min_frames is not None:
            return self.min_frames
        if split == "train":
            spec = self.sampling_spec or self.resolve_sampling()
            return max(2, spec.min_frames)
        return _EVAL_MIN_FRAMES

    def _load_splits(self, splits: list[str], root: Path) -> None:
        if not splits:
            return
        if not self.check:
            for split in splits:
                self.records[split] = discover(root, split)
                self.annotation_keys[split] = split_annotation_keys(self.records[split])
            return
        # Splits with the same length requirement are checked together: one report, one error message.
        report = DatasetReport(root=str(root))
        groups: dict[int, list[str]] = {}
        for split in splits:
            groups.setdefault(self._min_frames(split), []).append(split)
        for min_frames, group in groups.items():
            part = check_dataset(root, splits=group, min_frames=min_frames, image_size=self.image_size,
                                 require_annotations=self.require_annotations)
            for problem in part.problems:
                if problem not in report.problems:
                    report.problems.append(problem)
            for name in ("videos", "frames", "annotation_keys", "records"):
                getattr(report, name).update(getattr(part, name))
        self.report = report if self.report is None else self._merge(self.report, report)
        report.raise_if_errors()
        if report.warnings:
            lines = [f"  - {p.path}: {p.message}" for p in report.warnings[:_WARNING_LINES]]
            more = len(report.warnings) - _WARNING_LINES
            rank_zero_warn(f"dataset check of {root}: {len(report.warnings)} warning(s):\n" + "\n".join(lines)
                           + (f"\n  ... and {more} more" if more > 0 else ""))
        for split in splits:
            self.records[split] = report.records[split]
            self.annotation_keys[split] = report.annotation_keys.get(split, [])

    @staticmethod
    def _merge(old: DatasetReport, new: DatasetReport) -> DatasetReport:
        merged = DatasetReport(root=old.root, problems=list(old.problems))
        merged.problems.extend(p for p in new.problems if p not in old.problems)
        for name in ("videos", "frames", "annotation_keys", "records"):
            getattr(merged, name).update(getattr(old, name))
            getattr(merged, name).update(getattr(new, name))
        return merged

    # ----------------------------------------------------------------------------------- dataloaders
    def _require(self, dataset: Any, stage: str) -> Any:
        if dataset is None:
            raise RuntimeError(f"call setup({stage!r}) before asking for its dataloader")
        return dataset

    def train_dataloader(self) -> DataLoader:
        """Batches of :class:`TrainingDataset` samples: ``source`` [B, S, 3, H, W], ``driving`` [B, T, .]"""
        dataset = self._require(self.train_dataset, "fit")
        shard = _distributed()
        if shard is not None:
            world_size, rank = shard
            sampler: Any = EpochDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True,
                                                   seed=self.seed, drop_last=False)
        else:
            sampler = SeededRandomSampler(len(dataset), seed=self.seed)
        return DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
            # Dropping the ragged last batch keeps batch statistics stable, unless it is the only batch.
            drop_last=len(sampler) >= self.batch_size, pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self, dataset: Dataset, persistent: bool = False, even: bool = False) -> DataLoader:
        """One video per batch. Under DDP, test shards are unpadded (exact metric parity with one process);
        ``even`` shards (validation inside ``fit``) are padded with flagged repeats so every rank runs the
        same number of steps through the DDP wrapper."""
        shard = _distributed()
        sampler: Any = None
        if shard is not None and even:
            dataset = PaddingFlagDataset(dataset)
            sampler = EvenDistributedSampler(dataset, num_replicas=shard[0], rank=shard[1])
        elif shard is not None:
            sampler = UnpaddedDistributedSampler(dataset, num_replicas=shard[0], rank=shard[1])
        return DataLoader(
            dataset, batch_size=1, shuffle=False, sampler=sampler, num_workers=self.num_workers,
            collate_fn=collate_single, pin_memory=torch.cuda.is_available(),
            persistent_workers=persistent and self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        """Same-identity reconstruction on a few validation videos, one video per batch."""
        return self._eval_loader(self._require(self.val_dataset, "fit"), persistent=True, even=True)

    def test_dataloader(self) -> list[DataLoader]:
        """``[same_identity, cross_identity]`` loaders on ``test/`` (order of :attr:`test_protocols`)."""
        datasets = self._require(self.test_datasets, "test")
        return [self._eval_loader(dataset) for dataset in datasets]

    def predict_dataloader(self) -> DataLoader:
        """Same-identity protocol on ``test/``: every test video driven by itself."""
        return self._eval_loader(self._require(self.test_datasets, "predict")[0])

    # ----------------------------------------------------------------------------------------- describe
    def describe(self) -> dict[str, Any]:
        """What was loaded, for result files: root, splits with video/frame/identity counts, annotations."""
        root = self._root()
        splits = {}
        for split, records in self.records.items():
            splits[split] = {
                "videos": len(records),
                "frames": sum(record.num_frames for record in records),
                "identities": len(identities(records)),
                "annotations": bool(records) and all(record.annotation is not None for record in records),
                "annotation_keys": list(self.annotation_keys.get(split, [])),
                "frame_sizes": sorted({f"{r.height}x{r.width}" for r in records}),
            }
        try:
            meta = read_meta(root)
        except ValueError:
            meta = None
        spec = self.sampling_spec
        return {
            "root": str(root),
            "image_size": self.image_size,
            "eval_num_sources": self.eval_num_sources,
            **{f"eval_{key}": value for key, value in self.eval_protocol_args.items()},
            "splits": splits,
            "val_split": self.val_split if root.is_dir() else None,
            "sampling": None if spec is None else {"mode": spec.mode, "num_source": spec.num_source,
                                                   "num_driving": spec.num_driving},
            "augment": self.augment, "balance": self.balance,
            "repeats": self.repeats,
            "seed": self.seed,
            "max_frames_per_video": self.max_frames_per_video,
            "cross_identity_pairs": None if self.cross_identity_pairs_list is None
            else len(self.cross_identity_pairs_list),
            "cross_identity_pairs_file": self.cross_identity_pairs,
            "checked": self.check,
            "warnings": None if self.report is None else [str(p) for p in self.report.warnings],
            "meta": meta,
        }

