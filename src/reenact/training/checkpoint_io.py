"""Checkpoints written to a temporary file and renamed, so a crash never leaves a truncated ``.ckpt``; periodic
saving by training time plus a final save."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from reenact.data.video import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with write-then-rename saving and ``weights_only=True`` loading."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        with atomic_path(Path(path)) as temporary:
            torch.save(checkpoint, temporary)

    def load_checkpoint(self, path: Any, map_location: Any | None = "cpu", weights_only: bool | None = None
                        ) -> dict[str, Any]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found")
        return torch.load(path, map_location=map_location, weights_only=True)


class PeriodicCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint(save_last=True)`` that saves every ``train_time_interval`` of training and once more
    when training ends (max_steps, max_time or max_epochs), so ``last.ckpt`` always holds the final weights.

    A time interval alone would skip the end of training: Lightning then saves neither at epoch ends nor at the
    end of fit.
    """

    def __init__(self, minutes: float = 10.0, **kwargs: Any) -> None:
        super().__init__(save_last=True, train_time_interval=timedelta(minutes=minutes), **kwargs)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.fast_dev_run or trainer.sanity_checking:
            return
        candidates = self._monitor_candidates(trainer)
        if self._last_global_step_saved != trainer.global_step:
            self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)
