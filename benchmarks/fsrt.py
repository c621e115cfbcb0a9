"""FSRT benchmark (issue 5): parameters against the official counts, CPU ms per frame at 256 px for the
decoder and the small decoder, peak memory against the pixel-chunk size, training throughput of ``tiny``.

    python benchmarks/fsrt.py --out benchmarks/results/fsrt

* Parameters: each part of the ``paper`` preset's generator against the sum of the official state-dict shapes
  (``tests/data/official_state_dict_layouts.json``, ``fsrt``), counted the same way (state-dict entries).
* Speed: random weights (speed does not depend on their values), 256 px, batch 1, one source, 2 threads. The
  source is encoded once per video; each driving frame costs keypoints + expression of the frame and the
  decoding of all 65,536 pixels (chunk 16,384). Median over the timed frames after one warm-up frame.
* Memory: for each chunk size, a fresh process encodes a source and decodes one frame; its peak resident
  set size (``ru_maxrss``) is reported, with the same process's peak before decoding as the baseline.
* Training throughput: ``tiny`` preset on the default synthetic dataset, one process, samples per second
  over 12 optimizer steps after 3 warm-up steps (phase I; ``kp_pretrain_steps`` 0 so the FSRT losses run).
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LAYOUTS, reference_ms, stamp, write  # noqa: E402

SMALL_DECODER = {"decoder_heads": 6, "decoder_mlp_dim": 768, "render_hidden": (1536, 768)}


def generator_kwargs() -> dict:
    from reenact.models import preset_config

    return dict(preset_config("fsrt", "paper")["model"]["generator"])


def parameters() -> dict:
    from reenact.models.fsrt.torch_model import FSRTGenerator

    official = json.loads(LAYOUTS.read_text())["fsrt"]
    with torch.device("meta"):
        full = FSRTGenerator(**generator_kwargs())
        small = FSRTGenerator(**{**generator_kwargs(), **SMALL_DECODER})
    rows = {}
    for part, module in (("kp_detector", full.kp_detector), ("encoder", full.encoder), ("decoder", full.decoder),
                         ("small_decoder", small.decoder), ("expression_encoder", full.expression_encoder)):
        ours = sum(v.numel() for v in module.state_dict().values())
        theirs = sum(math.prod(shape) for shape in official[part].values())
        rows[part] = {"reenact": ours, "official": theirs, "equal": ours == theirs}
    return rows


@torch.no_grad()
def speed(small: bool, frames: int) -> dict:
    from reenact.models.fsrt.torch_model import FSRTGenerator

    torch.manual_seed(0)
    kwargs = {**generator_kwargs(), **(SMALL_DECODER if small else {})}
    model = FSRTGenerator(**kwargs).eval()
    source = torch.rand(1, 1, 3, 256, 256)
    started = time.perf_counter()
    kp, expr = model.extract(source[:, 0])
    z = model.encode(source, kp[:, None], expr[:, None])
    encode_ms = 1000 * (time.perf_counter() - started)
    times = []
    for index in range(frames + 1):
        driving = torch.rand(1, 3, 256, 256)
        started = time.perf_counter()
        kp_d, expr_d = model.extract(driving)
        model.render(z, kp_d, expr_d, 256, 256, chunk_size=16384)
        if index > 0:
            times.append(1000 * (time.perf_counter() - started))
    return {"source_encoding_ms": round(encode_ms, 1), "ms_per_frame_median": round(statistics.median(times), 1),
            "frames_timed": frames}


@torch.no_grad()
def memory_child(chunk: int) -> None:
    from reenact.models.fsrt.torch_model import FSRTGenerator

    model = FSRTGenerator(**generator_kwargs()).eval()
    source = torch.rand(1, 1, 3, 256, 256)
    kp, expr = model.extract(source[:, 0])
    z = model.encode(source, kp[:, None], expr[:, None])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model.render(z, kp, expr, 256, 256, chunk_size=chunk)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"chunk": chunk, "peak_rss_before_decode_mb": before / 1024, "peak_rss_mb": after / 1024}))


def memory(chunks: list[int]) -> list[dict]:
    rows = []
    for chunk in chunks:
        output = subprocess.run([sys.executable, __file__, "--memory-child", str(chunk)], capture_output=True,
                                text=True, check=True).stdout
        rows.append(json.loads(output.strip().splitlines()[-1]))
    return rows


def throughput(steps: int = 12, warmup: int = 3) -> dict:
    import lightning as L

    from reenact.data import ReenactDataModule
    from reenact.models import create_model

    class Timer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, trainer, module, batch, index) -> None:  # noqa: ANN001
            self.times.append(time.perf_counter())

    torch.manual_seed(0)
    model = create_model("fsrt", preset="tiny", kp_pretrain_steps=0)
    data = ReenactDataModule(image_size=model.image_size, batch_size=8, repeats=8)
    timer = Timer()
    trainer = L.Trainer(accelerator="cpu", max_steps=steps + warmup, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        callbacks=[timer], use_distributed_sampler=False)
    trainer.fit(model, datamodule=data)
    spans = [b - a for a, b in zip(timer.times[warmup:], timer.times[warmup + 1:], strict=False)]
    seconds = statistics.median(spans)
    return {"batch_size": 8, "seconds_per_step_median": round(seconds, 3),
            "samples_per_second": round(8 / seconds, 2), "steps_timed": len(spans)}


def main() -> int:
    parser = argparse.ArgumentParser(description="FSRT benchmark (parameters, CPU speed, memory, throughput)")
    parser.add_argument("--out", default="benchmarks/results/fsrt", help="output path without suffix")
    parser.add_argument("--frames", type=int, default=1, help="timed frames per decoder (default 1)")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    options = parser.parse_args()
    torch.set_num_threads(2)
    if options.memory_child:
        memory_child(options.memory_child)
        return 0
    reference = reference_ms()
    result = {**stamp(), "reference_matmul_1024_ms": round(reference, 2), "parameters": parameters(),
              "speed_256px_cpu": {
        "decoder": speed(False, options.frames), "small_decoder": speed(True, options.frames)},
        "memory_vs_chunk": memory([4096, 16384, 65536]), "train_throughput_tiny": throughput()}
    p, s, m, t = (result[k] for k in ("parameters", "speed_256px_cpu", "memory_vs_chunk", "train_throughput_tiny"))
    lines = [
        "# FSRT benchmark",
        "## Parameters (paper preset)", "", "| part | reenact | official (andrerochow/fsrt) |", "|---|---|---|",
        *[f"| {k} | {v['reenact']:,} | {v['official']:,} |" for k, v in p.items()], "",
        "## CPU ms per frame at 256 px (2 threads, batch 1, one source encoded once)", "",
        f"Reference measured in the same run: a 1024x1024 float32 matmul takes {reference:.2f} ms.", "",
        "| decoder | source encoding (once) | per driving frame (median) | frame / reference matmul |",
        "|---|---|---|---|",
        *[f"| {k} | {v['source_encoding_ms']} ms | {v['ms_per_frame_median']} ms | "
          f"{v['ms_per_frame_median'] / reference:.0f}x |" for k, v in s.items()], "",
        "## Peak memory against the pixel-chunk size (one 256 px frame)", "",
        "| chunk (pixels) | peak RSS before decoding | peak RSS after decoding |", "|---|---|---|",
        *[f"| {r['chunk']:,} | {r['peak_rss_before_decode_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB |" for r in m],
        "", "## Training throughput, tiny preset (64 px, 1 process)", "",
        f"{t['samples_per_second']} samples/s ({t['seconds_per_step_median']} s per step of {t['batch_size']}, "
        f"median of {t['steps_timed']} steps)",
    ]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
