"""Checkpoints written to a temporary file and renamed, so a crash never leaves a truncated ``.ckpt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
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
