"""The shared data pipeline: FOMM-layout discovery, dataset checks, training datasets, evaluation protocols
and the ``ReenactDataModule``. See ``src/reenact/data/README.md`` for the layout, batch keys and errors.

Names are imported on first use, so ``import reenact.data.video`` stays cheap (no torch, no Lightning).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # discovery
    "DatasetError": "discovery",
    "VideoRecord": "discovery",
    "VideoProbe": "discovery",
    "discover": "discovery",
    "probe_video": "discovery",
    "split_identity": "discovery",
    # checks
    "DatasetReport": "checks",
    "Problem": "checks",
    "check_dataset": "checks",
    # augmentation
    "AugmentConfig": "augment",
    "IBUG68_FLIP": "augment",
    # datasets and samplers
    "SamplingSpec": "datasets",
    "TrainingDataset": "datasets",
    "PairDataset": "datasets",
    "SequenceDataset": "datasets",
    "MultiSourceDataset": "datasets",
    "SeededRandomSampler": "samplers",
    "EpochDistributedSampler": "samplers",
    "UnpaddedDistributedSampler": "samplers",
    # protocols
    "PROTOCOLS": "protocols",
    "SameIdentityDataset": "protocols",
    "CrossIdentityDataset": "protocols",
    "make_cross_identity_pairs": "protocols",
    "save_pairs": "protocols",
    "load_pairs": "protocols",
    "collate_single": "protocols",
    # Lightning
    "ReenactDataModule": "datamodule",
    # video input/output
    "VideoReadError": "video",
    "read_video": "video",
    "write_video": "video",
    "write_frame_folder": "video",
}

__all__ = [
    "AugmentConfig",
    "CrossIdentityDataset",
    "DatasetError",
    "DatasetReport",
    "EpochDistributedSampler",
    "IBUG68_FLIP",
    "MultiSourceDataset",
    "PROTOCOLS",
    "PairDataset",
    "Problem",
    "ReenactDataModule",
    "SameIdentityDataset",
    "SamplingSpec",
    "SeededRandomSampler",
    "SequenceDataset",
    "TrainingDataset",
    "UnpaddedDistributedSampler",
    "VideoProbe",
    "VideoReadError",
    "VideoRecord",
    "check_dataset",
    "collate_single",
    "discover",
    "load_pairs",
    "make_cross_identity_pairs",
    "probe_video",
    "read_video",
    "save_pairs",
    "split_identity",
    "write_frame_folder",
    "write_video",
]

if TYPE_CHECKING:
    from reenact.data.augment import IBUG68_FLIP, AugmentConfig
    from reenact.data.checks import DatasetReport, Problem, check_dataset
    from reenact.data.datamodule import ReenactDataModule
    from reenact.data.datasets import (
        MultiSourceDataset,
        PairDataset,
        SamplingSpec,
        SequenceDataset,
        TrainingDataset,
    )
    from reenact.data.discovery import (
        DatasetError,
        VideoProbe,
        VideoRecord,
        discover,
        probe_video,
        split_identity,
    )
    from reenact.data.protocols import (
        PROTOCOLS,
        CrossIdentityDataset,
        SameIdentityDataset,
        collate_single,
        load_pairs,
        make_cross_identity_pairs,
        save_pairs,
    )
    from reenact.data.samplers import EpochDistributedSampler, SeededRandomSampler, UnpaddedDistributedSampler
    from reenact.data.video import VideoReadError, read_video, write_frame_folder, write_video


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'reenact.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"reenact.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
