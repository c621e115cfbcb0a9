"""The validation sample grid: rows of source | driving | generated for the first frames of one video."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reenact.data.video import atomic_path


def sample_grid(batch: dict[str, Any], generated: torch.Tensor, count: int) -> torch.Tensor:
    """``[3, H', W']`` grid of the first video of ``batch``: ``count`` rows of source | driving | generated
    (``generated [B, T, 3, H, W]``)."""
    import torchvision

    count = min(count, generated.shape[1])
    source = batch["source"][0, :1].expand(count, -1, -1, -1)
    images = torch.stack([source, batch["driving"][0, :count], generated[0, :count]], 1).flatten(0, 1)
    return torchvision.utils.make_grid(images.float().clamp(0, 1).cpu(), nrow=3, padding=2)


def write_sample_grid(directory: Path, name: str, grid: torch.Tensor) -> Path:
    """Write ``grid`` as ``directory/name`` (PNG), atomically."""
    import torchvision

    target = directory / name
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        torchvision.utils.save_image(grid, temporary, format="png")
    return target
