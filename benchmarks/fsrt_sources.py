"""FSRT Table 1's 1-Src vs 2-Src rows (paper 003, Sec. 4.1-4.2) on the synthetic data, at the tiny preset.

    python benchmarks/fsrt_sources.py --out benchmarks/results/fsrt_sources [--scale 1]

Two FSRT models are trained from the same seed on the embedded synthetic dataset: the 1-Src model with one source
frame per training sample, the 2-Src model with two (``train_sources``). Each is evaluated with as many sources on
FSRT's protocol (source frame 0, plus the last frame for 2 sources; every 10th frame at least 10 frames from every
source), beside copy-source on the same frames (source frame 0 copied). ``--scale`` multiplies the preset's
``trainer.max_steps`` and every step-counted schedule (``reenact.comparison.plan.STEP_HPARAMS``), as
``reenact benchmark --budget Nx`` does. The paper's claim: 2-Src beats 1-Src on L1 / PSNR.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, stamp, write  # noqa: E402

PRESET = ROOT / "conf" / "fsrt" / "tiny.yaml"
METRICS = ["l1", "psnr", "ms_ssim"]


def datamodule(sources: int) -> object:
    from reenact.data import ReenactDataModule

    data = yaml.safe_load(PRESET.read_text())["data"]
    return ReenactDataModule(image_size=64, batch_size=data["batch_size"], repeats=data["repeats"],
                             max_frames_per_video=data["max_frames_per_video"], augment=data["augment"], seed=0,
                             num_cross_identity_pairs=2, eval_num_sources=sources, eval_frame_stride=10,
                             eval_min_source_distance=10, eval_source_placement="ends")


def trainer(folder: Path, steps: int | None = None) -> object:
    import lightning as L

    return L.Trainer(accelerator="cpu", devices=1, max_steps=steps if steps else -1, logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=folder)


def same_identity(model: object, sources: int, folder: Path) -> dict[str, float]:
    """The same-identity metrics of ``model`` tested with ``sources`` source frames (its results payload)."""
    trainer(folder).test(model, datamodule=datamodule(sources), verbose=False)
    metrics = model.evaluation_results["protocols"]["same_identity"]["metrics"]  # type: ignore[attr-defined]
    values = {metric["name"]: metric["value"] for metric in metrics}
    return {name: float(values[name]) for name in METRICS}


def run(sources: int, scale: float, folder: Path) -> dict[str, object]:
    import lightning as L

    from reenact.comparison.plan import STEP_HPARAMS
    from reenact.models import create_model

    config = yaml.safe_load(PRESET.read_text())
    overrides: dict[str, object] = {"train_sources": sources}
    for name in STEP_HPARAMS["fsrt"]:
        value = config["model"][name]
        overrides[name] = 0 if value == 0 else max(1, round(value * scale))
    steps = max(1, round(config["trainer"]["max_steps"] * scale))
    L.seed_everything(0)
    model = create_model("fsrt", preset="tiny", evaluation={"metrics": METRICS}, **overrides)
    started = time.perf_counter()
    fit = trainer(folder / f"fsrt-{sources}", steps)
    fit.fit(model, datamodule=datamodule(sources))
    seconds = time.perf_counter() - started
    fsrt = same_identity(model, sources, folder / f"fsrt-{sources}-test")
    floor = same_identity(create_model("copy-source", preset="tiny", evaluation={"metrics": METRICS}), sources,
                          folder / f"copy-{sources}")
    return {"sources": sources, "steps": steps, "train_seconds": round(seconds, 1), "fsrt": fsrt,
            "copy_source": floor}


def main() -> int:
    parser = argparse.ArgumentParser(description="FSRT 1-Src vs 2-Src (paper 003, Table 1) at the tiny preset")
    parser.add_argument("--out", default="benchmarks/results/fsrt_sources", help="output path without suffix")
    parser.add_argument("--scale", type=float, default=1.0, help="multiple of the preset's step budget (default 1)")
    options = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        rows = [run(sources, options.scale, Path(folder)) for sources in (1, 2)]
    one, two = rows
    ordering = {name: (two["fsrt"][name] < one["fsrt"][name]) if name == "l1" else
                (two["fsrt"][name] > one["fsrt"][name]) for name in METRICS}
    result = {**stamp(), "scale": options.scale, "rows": rows, "two_sources_better": ordering}
    lines = [
        "# FSRT: 1-Src vs 2-Src (Table 1), tiny preset, synthetic data",
        f"Budget: {options.scale} x the tiny preset's steps ({one['steps']} optimiser steps each), seed 0. "
        "FSRT protocol (source frame 0, + the last frame for 2 sources; every 10th frame >= 10 frames from every "
        "source). copy-source copies source frame 0 on the same frames.", "",
        "| model | sources | L1 ↓ | PSNR ↑ | MS-SSIM ↑ | copy-source L1 | copy-source PSNR | training time |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| fsrt | {r['sources']} | {r['fsrt']['l1']:.4f} | {r['fsrt']['psnr']:.2f} | {r['fsrt']['ms_ssim']:.4f} "
          f"| {r['copy_source']['l1']:.4f} | {r['copy_source']['psnr']:.2f} | {r['train_seconds']} s |"
          for r in rows], "",
        "2-Src better than 1-Src (the paper's ordering): "
        + ", ".join(f"{name}: {'yes' if better else 'no'}" for name, better in ordering.items()),
    ]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
