"""LIA learns at CPU scale: trained briefly on a tiny fixed set of synthetic talking heads with the ``tiny``
preset's recipe (reconstruction warm-up, source-reconstructing initialisation, pyramid-L1 stand-in, GAN ramped in
after the warm-up), its same-identity L1 on frames with real motion falls below copy-source's on the same frames.

With the official recipe (StyleGAN2 initialisation, GAN from step 0, ``beta1 = 0``) the same budget stays well
above copy-source, so this test fails if the model stops learning. Measured (1 thread, shared machine): this
recipe 0.050 vs copy-source 0.066; the old recipe (official init, GAN from step 0, ``beta1 = 0``, no structural
term) 0.166 on the same 200 batches; this recipe with only 100 batches (GAN from batch 80) 0.074.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch

from reenact.data.datamodule import ReenactDataModule
from reenact.data.synthetic import generate_dataset
from reenact.models.lia.lightning_model import LIA

SIZE = 32
#: The tiny preset's recipe (conf/lia/tiny.yaml) on a smaller network (32 px) and a shorter schedule.
RECIPE: dict[str, Any] = {"image_size": SIZE,
                          "generator": {"style_dim": 64, "motion_dim": 20, "channel_base": 512, "channel_max": 64},
                          "lr": 2e-3, "generator_beta1": 0.9, "structural_weight": 1.0,
                          "source_init": True, "gan_start_steps": 320, "gan_ramp_steps": 80}
BATCHES = 200  # 2 optimiser steps per batch: 160 batches of reconstruction warm-up, then the GAN ramps in


@functools.cache
def trained_tiny_lia() -> tuple[Path, L.Trainer, LIA]:
    """``(data root, trainer, model)``: 6 synthetic videos x 24 frames (64 px, loaded at 32 px), whose training
    split is the tiny fixed set, and LIA trained on it with :data:`RECIPE`. Made once per process (the LPMM
    learning test reuses it as its backbone); removed at exit."""
    folder = Path(tempfile.mkdtemp(prefix="reenact-lia-learning-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    root = generate_dataset(folder / "data", videos=6, frames=24, size=64, seed=3, progress=False)
    trainer, model = train_lia(root, folder / "run", **RECIPE)
    return root, trainer, model


def motion_pairs(root: Path, size: int = SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(source [N, 3, S, S], driving [N, 3, S, S])``: frame 0 of every training video with its frames 8, 12,
    ..., 20 (at least 8 frames from the source, so the head has moved)."""
    import torch.nn.functional as F

    from reenact.data.video import read_video

    sources, drivings = [], []
    for video in sorted((root / "train").glob("*.mp4")):
        frames = torch.from_numpy(read_video(video)).permute(0, 3, 1, 2).float() / 255
        frames = F.interpolate(frames, size=size, mode="area")
        for t in range(8, frames.shape[0], 4):
            sources.append(frames[0])
            drivings.append(frames[t])
    return torch.stack(sources), torch.stack(drivings)


def train_lia(root: Path, tmp_path: Path, batches: int = BATCHES, **recipe: Any) -> tuple[L.Trainer, LIA]:
    """Fit LIA with ``recipe`` for ``batches`` batches on the training videos of ``root``."""
    torch.manual_seed(0)
    model = LIA(**recipe)
    data = ReenactDataModule(root=str(root), image_size=SIZE, batch_size=8, repeats=64, augment=False, seed=0,
                             sampling="pair", num_source=1, num_driving=1)
    data.setup("fit")
    trainer = L.Trainer(max_steps=2 * batches, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        accelerator="cpu", devices=1, default_root_dir=tmp_path)
    trainer.fit(model, train_dataloaders=data.train_dataloader())
    return trainer, model


def score(model: LIA, root: Path) -> tuple[float, float]:
    """``(model L1, copy-source L1)`` on :func:`motion_pairs`."""
    source, driving = motion_pairs(root)
    model.eval()
    with torch.no_grad():
        generated = model.animate(source[:, None], driving[:, None])[:, 0]
    return (generated - driving).abs().mean().item(), (source - driving).abs().mean().item()


def test_lia_tiny_recipe_beats_copy_source_on_moving_frames() -> None:
    root, _, model = trained_tiny_lia()
    l1, copy_l1 = score(model, root)
    assert l1 < copy_l1, f"LIA L1 {l1:.4f} not below copy-source {copy_l1:.4f}"
