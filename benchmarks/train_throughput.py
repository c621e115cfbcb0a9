"""Training throughput of every model's ``tiny`` preset (issue 7): samples per second with 1 and 2 DDP processes.

    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput

Each (model, processes) pair runs in a fresh child: ``Trainer(strategy="ddp", devices=N, accelerator="cpu")``
(N = 1: the default single-device strategy) fits the preset's model on the default synthetic dataset with the
preset's batch size, validation off. A callback timestamps the start of every batch on rank 0; the median gap
after ``--warmup`` batches is the time per optimisation iteration, and samples per second are
``batch_size x N / median``. Steady state is measured: before timing, every training video is decoded once into
the process's frame cache (:data:`reenact.data.datasets.VIDEO_CACHE`), as the first epoch of any real run does;
otherwise the first dozen batches, the ones timed, would each decode several whole videos. On a machine with
fewer cores than ``N x torch threads`` the processes share cores, and the 2-process figure says how much DDP
costs there rather than how it scales.

Notes per model: ``pechead`` trains its generator stage (R frozen, random weights: the cost is the same);
``lpmm`` its first (regressor) stage over a randomly initialised tiny LIA backbone; ``fsrt`` its phase I
generator training (``kp_pretrain_steps = 0`` here: the short keypoint-detector pretraining that opens a real run
is several times faster per batch and would hide the cost of the model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import reference_ms, stamp, write  # noqa: E402
from lpmm_nme import lia_checkpoint  # noqa: E402

MODELS = ("pechead", "fsrt", "lia", "lpmm", "keypoint-warp")
#: Optimiser steps per training iteration (generator + discriminator optimisers step together).
STEPS_PER_BATCH = {"pechead": 2, "lia": 2}


def child(name: str, devices: int, batches: int, warmup: int, out: Path) -> None:
    import lightning as L

    from reenact.data import ReenactDataModule
    from reenact.models import create_model
    from reenact.registry import preset_config

    class BatchTimer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
            from reenact.data.datasets import VIDEO_CACHE

            for record in trainer.datamodule.records["train"]:
                if Path(record.path).is_file():  # frame folders are read per frame, not cached
                    VIDEO_CACHE.get(Path(record.path))

        def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any,
                                 index: int) -> None:
            self.times.append(time.perf_counter())

    torch.manual_seed(0)
    overrides: dict[str, Any] = {"fsrt": {"kp_pretrain_steps": 0}}.get(name, {})
    if name == "lpmm":
        rank = os.environ.get("LOCAL_RANK", "0")  # each DDP process writes its own copy: no race
        overrides["backbone_ckpt"] = str(lia_checkpoint(out.with_suffix(f".lia{rank}.ckpt")))
    model = create_model(name, preset="tiny", **overrides)
    data_config = preset_config(name, "tiny").get("data") or {}
    data = ReenactDataModule(image_size=model.image_size, batch_size=data_config.get("batch_size", 8),
                             repeats=data_config.get("repeats", 8),
                             max_frames_per_video=data_config.get("max_frames_per_video"))
    timer = BatchTimer()
    trainer = L.Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                        max_steps=STEPS_PER_BATCH.get(name, 1) * (batches + warmup + 1), logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer],
                        use_distributed_sampler=False)
    trainer.fit(model, datamodule=data)
    if trainer.is_global_zero:
        spans = [b - a for a, b in zip(timer.times[warmup:], timer.times[warmup + 1:], strict=False)]
        seconds = statistics.median(spans)
        batch = data.batch_size
        out.write_text(json.dumps({
            "model": name, "processes": devices, "batch_size_per_process": batch,
            "seconds_per_batch": round(seconds, 3), "samples_per_second": round(batch * devices / seconds, 2),
            "batches_timed": len(spans), "torch_threads": torch.get_num_threads()}))


def main() -> int:
    parser = argparse.ArgumentParser(description="Training samples/s of every tiny preset, 1 and 2 DDP processes")
    parser.add_argument("--out", default="benchmarks/results/train_throughput", help="output path without suffix")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--batches", type=int, default=8, help="batches timed after warm-up (default 8)")
    parser.add_argument("--warmup", type=int, default=3, help="batches not timed (default 3)")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "DEVICES", "OUT"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        name, devices, out = options.child
        child(name, int(devices), options.batches, options.warmup, Path(out))
        return 0
    torch.set_num_threads(2)
    reference = reference_ms()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in options.models.split(","):
            for devices in (1, 2):
                out = Path(folder) / f"{name}-{devices}.json"
                run = subprocess.run([sys.executable, __file__, "--batches", str(options.batches), "--warmup",
                                      str(options.warmup), "--child", name, str(devices), str(out)],
                                     capture_output=True, text=True, check=False,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
                if run.returncode != 0 or not out.is_file():
                    raise SystemExit(f"{name} x{devices}: failed\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
                row = json.loads(out.read_text())
                rows.append(row)
                print(row, file=sys.stderr)
    result = {**stamp(), "reference_matmul_ms": round(reference, 2), "rows": rows}
    lines = ["# Training throughput of the tiny presets (64 px, CPU)", "",
             "| model | processes | batch per process | s per batch | samples/s | 2-process / 1-process |",
             "|---|---|---|---|---|---|"]
    single = {r["model"]: r["samples_per_second"] for r in rows if r["processes"] == 1}
    for row in rows:
        ratio = "" if row["processes"] == 1 else f"{row['samples_per_second'] / single[row['model']]:.2f}"
        lines.append(f"| `{row['model']}` | {row['processes']} | {row['batch_size_per_process']} | "
                     f"{row['seconds_per_batch']} | {row['samples_per_second']} | {ratio} |")
    lines += ["", f"Reference: a 1024x1024 float32 matmul took {reference:.2f} ms in the same run.",
              "Method: see the docstring of `benchmarks/train_throughput.py`."]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
