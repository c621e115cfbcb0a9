"""FSRT learns at CPU scale: a short fit of the ``tiny`` recipe on a tiny synthetic set beats copy-source.

The recipe (``conf/fsrt/tiny.yaml``, README "Training recipe at CPU scale") is trained for a shortened schedule:
every step-counted hyper-parameter of ``reenact.comparison.plan.STEP_HPARAMS`` is scaled like the benchmark
scales it, so detector pretraining and phases I-III all run. The model must then reconstruct the training
videos' frames that moved away from the source (frames >= 8 of 24, every 4th, source = frame 0) with a lower
same-identity L1 than copying the source frame. It fails with the old recipe (PyTorch-default patch-CNN
initialisation: the outputs settle on the dataset-mean gray image).

Status: the current recipe does not pass yet (measured: L1 0.106 against copy-source's 0.071 after 200 steps, see
the model README), so the test is an ``xfail`` (not strict) that reports the gap in every run; remove the marker
once a recipe passes it.
"""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import reenact.models
from reenact.comparison.plan import STEP_HPARAMS

PRESET = Path(__file__).resolve().parents[1] / "conf" / "fsrt" / "tiny.yaml"
STEPS = 200  # optimiser steps of the shortened schedule (the preset's max_steps scaled down)


def _eval_root(data: Path, root: Path) -> Path:
    """A dataset whose test split is the training split (the fixed set trained on)."""
    root.mkdir()
    (root / "annotations").mkdir()
    for split in ("train", "test"):
        os.symlink(data / "train", root / split)
        os.symlink(data / "annotations" / "train", root / "annotations" / split)
    return root


@pytest.mark.xfail(reason="fsrt tiny recipe does not yet beat copy-source at CPU scale (README: Training recipe "
                          "at CPU scale)", strict=False)
def test_fsrt_tiny_recipe_beats_copy_source_on_a_tiny_set(tmp_path: Path) -> None:
    from reenact.data import ReenactDataModule
    from reenact.data.synthetic import generate_dataset

    data_root = generate_dataset(tmp_path / "data", videos=8, frames=24, size=64, seed=3, progress=False)
    config = yaml.safe_load(PRESET.read_text())
    model_config = dict(config["model"])
    scale = STEPS / config["trainer"]["max_steps"]
    for name in STEP_HPARAMS["fsrt"]:
        value = model_config[name]
        model_config[name] = 0 if value == 0 else max(1, round(value * scale))
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, 2))
    try:
        L.seed_everything(0)
        model = reenact.models.create_model("fsrt", **model_config)
        train = ReenactDataModule(root=str(data_root), image_size=64, batch_size=8, repeats=8, seed=0)
        trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=STEPS, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                            num_sanity_val_steps=0, use_distributed_sampler=False, default_root_dir=tmp_path)
        trainer.fit(model, datamodule=train)
        assert int(model.train_iteration) > model_config["kp_pretrain_steps"] + model_config["phase3_start"]

        evaluation = ReenactDataModule(root=str(_eval_root(data_root, tmp_path / "eval")), image_size=64,
                                       batch_size=1, eval_frame_stride=4, eval_min_source_distance=8,
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
    finally:
        torch.set_num_threads(threads)
    model_mean, copy_mean = sum(model_l1) / len(model_l1), sum(copy_l1) / len(copy_l1)
    assert model_mean < copy_mean, f"fsrt L1 {model_mean:.4f} is not below copy-source's {copy_mean:.4f}"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
