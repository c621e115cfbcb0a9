"""FSRT learns at CPU scale: a short fit of the ``tiny`` recipe on a tiny synthetic set beats copy-source.

The recipe (``conf/fsrt/tiny.yaml``, README "Training recipe at CPU scale") is trained for a shortened schedule:
every step-counted hyper-parameter of ``reenact.comparison.plan.STEP_HPARAMS`` is scaled like the benchmark
scales it, so detector pretraining and phases I-III all run. The model must then reconstruct the training
videos' frames that moved away from the source (frames >= 8 of 24, every 4th, source = frame 0) with a lower
same-identity L1 than copying the source frame. It fails with the old recipe (PyTorch-default patch-CNN
initialisation: the outputs settle on the dataset-mean gray image).

Status: the current recipe does not pass yet (measured: L1 0.106 against copy-source's 0.071 after 200 steps, see
the model README), so the test is a strict ``xfail``: it reports the gap in every run and fails the run as soon as
a recipe passes it, so that the marker is removed then.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

import reenact.models
from learning_support import l1_against_copy_source, tiny_set
from reenact.comparison.plan import STEP_HPARAMS

PRESET = Path(__file__).resolve().parents[1] / "conf" / "fsrt" / "tiny.yaml"
STEPS = 200  # optimiser steps of the shortened schedule (the preset's max_steps scaled down)


@pytest.mark.xfail(reason="fsrt tiny recipe does not yet beat copy-source at CPU scale (README: Training recipe "
                          "at CPU scale)", strict=True)
def test_fsrt_tiny_recipe_beats_copy_source_on_a_tiny_set(tmp_path: Path) -> None:
    from reenact.data import ReenactDataModule

    data_root = tiny_set(tmp_path)
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

        model_mean, copy_mean = l1_against_copy_source(model, data_root, tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert model_mean < copy_mean, f"fsrt L1 {model_mean:.4f} is not below copy-source's {copy_mean:.4f}"


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
