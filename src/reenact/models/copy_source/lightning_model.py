"""``copy-source``: the output is the source frame, whatever the driving frames do.

The floor every method must beat: it scores what a model gets for keeping identity and background
while ignoring motion entirely. It has nothing to train.
"""

from __future__ import annotations

import torch

from reenact.models.base import ReenactmentModule


class CopySource(ReenactmentModule):
    """Returns the first source frame for every driving frame."""

    registry_name = "copy-source"
    trainable = False

    def __init__(self, image_size: int = 64) -> None:
        super().__init__(image_size=image_size)
        self.save_hyperparameters()

    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, relative: bool = False) -> torch.Tensor:
        """``source`` [B, S, 3, H, W], ``driving`` [B, T, 3, H, W] -> [B, T, 3, H, W]: source frame 0, T times."""
        return source[:, :1].expand(-1, driving.shape[1], -1, -1, -1).clone()

    def training_step(self, batch: dict, batch_idx: int) -> None:
        raise RuntimeError("copy-source has nothing to train; evaluate it with `reenact test --model copy-source`")

    def configure_optimizers(self) -> None:
        return None
