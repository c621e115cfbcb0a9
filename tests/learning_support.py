"""What the per-model learning tests share: a tiny fixed training set, and L1 against copy-source on it.

A learning test trains a model's ``tiny`` recipe (a shortened schedule) on :func:`tiny_set` and asserts that
:func:`l1_against_copy_source` on the same videos' moved frames is below copying the source frame: a test that
fails when the model stops learning, whatever else still runs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch


def tiny_set(tmp_path: Path, videos: int = 8, frames: int = 24, seed: int = 3) -> Path:
    """A 64 px synthetic dataset in the FOMM layout (its ``train/`` split is the fixed set trained on)."""
    from reenact.data.synthetic import generate_dataset

    return generate_dataset(tmp_path / "data", videos=videos, frames=frames, size=64, seed=seed, progress=False)


def self_evaluation_root(data: Path, root: Path) -> Path:
    """A dataset whose ``test/`` split is ``data``'s ``train/`` split (links, nothing copied)."""
    root.mkdir()
    (root / "annotations").mkdir()
    for split in ("train", "test"):
        os.symlink(data / "train", root / split)
        os.symlink(data / "annotations" / "train", root / "annotations" / split)
    return root


def l1_against_copy_source(model: torch.nn.Module, data: Path, tmp_path: Path, stride: int = 4,
                           min_source_distance: int = 8) -> tuple[float, float]:
    """``(model L1, copy-source L1)`` on the training videos: source frame 0, every ``stride``-th frame at least
    ``min_source_distance`` frames from it (FSRT's protocol, shortened to the clip length)."""
    from reenact.data import ReenactDataModule

    evaluation = ReenactDataModule(root=str(self_evaluation_root(data, tmp_path / "self-eval")), image_size=64,
                                   batch_size=1, eval_frame_stride=stride, eval_min_source_distance=min_source_distance,
                                   eval_source_placement="ends")
    evaluation.setup("test")
    model.eval()
    model_l1, copy_l1 = [], []
    with torch.no_grad():
        for batch in evaluation.test_dataloader()[0]:
            source, driving = batch["source"], batch["driving"]
            generated = model.generate_video(source, driving, False)
            model_l1.append((generated - driving).abs().mean().item())
            copy_l1.append((source[:, :1] - driving).abs().mean().item())
    return sum(model_l1) / len(model_l1), sum(copy_l1) / len(copy_l1)
