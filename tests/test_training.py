"""The shared Trainer configuration: periodic and final checkpoints."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

import reenact.models
from reenact.data import ReenactDataModule
from reenact.training import AtomicCheckpointIO, PeriodicCheckpoint


def test_last_checkpoint_holds_the_final_step_mid_epoch(synthetic_root: Path, tmp_path: Path) -> None:
    """Training stops mid-epoch (max_steps 3 of a longer epoch) long before the 60-minute interval: last.ckpt
    still holds step 3 (Lightning alone would write no checkpoint at all with a time interval)."""
    model = reenact.models.create_model("keypoint-warp", preset="tiny")
    data = ReenactDataModule(root=str(synthetic_root), image_size=64, batch_size=2, repeats=4,
                             max_frames_per_video=4)
    checkpoint = PeriodicCheckpoint(minutes=60, dirpath=tmp_path / "checkpoints")
    trainer = L.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[checkpoint], plugins=[AtomicCheckpointIO()], default_root_dir=tmp_path,
                        use_distributed_sampler=False)
    trainer.fit(model, datamodule=data)
    assert trainer.num_training_batches > 3  # the run ended inside the epoch
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3
    assert checkpoint._last_global_step_saved == 3
