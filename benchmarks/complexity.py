"""Complexity of every model's ``paper`` preset (issue 7): parameters, MACs per frame at 256 px, CPU ms per
frame, peak memory, beside the papers' figures.

    python benchmarks/complexity.py --out benchmarks/results/complexity

Every model is measured through the shared contract ``animate(source [1, 1, 3, 256, 256], driving [1, T, ...])``
with random weights, in its own fresh process (so peak memory is that model's alone), 2 torch threads, batch 1:

* parameters: the networks used at inference (discriminators, perceptual networks and other training-only
  modules left out, reported apart);
* MACs per driving frame: ``torch.utils.flop_counter.FlopCounterMode`` FLOPs / 2 of ``animate`` with T = 2 minus
  T = 1 (the per-frame part); "source" is the rest of T = 1, done once per video (source encoding, keypoints of
  the source...). Non-torch work (OpenCV frame flow in PECHead's CAP) is not counted;
* CPU ms per frame: (time(T = 1 + N) - time(T = 1)) / N after a warm-up call, each time the median of 3 calls;
  "source ms" = time(T = 1) minus one frame;
* peak memory: the process's peak resident set (``ru_maxrss``) after the timed calls, minus the peak before
  the model was built (Python, torch and reenact imported).

Ratios against a 1024x1024 float32 matmul measured in the same run make numbers from different (or busy) machines
comparable.
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

MODELS = ("pechead", "fsrt", "lia", "lpmm")
#: Training-only submodules (not part of the inference network the papers count).
TRAINING_ONLY = ("discriminator", "perceptual", "vgg", "evaluator")
#: Driving frames timed per model beyond the first (FSRT decodes every pixel with attention: seconds per frame).
TIMED_FRAMES = {"pechead": 3, "fsrt": 2, "lia": 4, "lpmm": 4}


def paper_figures() -> dict[str, dict[str, object]]:
    """What the papers and official code say, for the table (parameters in millions, GMACs at 256 px)."""
    layouts = json.loads(LAYOUTS.read_text())
    count = lambda part: sum(math.prod(s) for s in part.values()) / 1e6  # noqa: E731
    fsrt = layouts["fsrt"]
    fsrt_inference = sum(count(fsrt[p]) for p in ("kp_detector", "encoder", "decoder", "expression_encoder"))
    lia = count(layouts["lia"]["generator"])
    return {
        "pechead": {"params_m": 161.09, "gmacs": 357.10, "kind": "params",
                    "source": "PECHead supplement Table 1 (R + E + G; MACs of one 256x256 frame)"},
        "fsrt": {"params_m": round(fsrt_inference, 2), "gmacs": None, "kind": "state",
                 "source": "official FSRT state dict entries (kp detector + encoder + decoder + expression encoder)"},
        "lia": {"params_m": round(lia, 2), "gmacs": None, "kind": "state",
                "source": "official LIA generator state dict entries"},
        "lpmm": {"params_m": None, "gmacs": None, "kind": "params",
                 "source": "LPMM paper reports no count (LIA backbone + regressor + adaptor)"},
    }


def _build(name: str) -> torch.nn.Module:
    from reenact.models import create_model

    overrides = {"pechead": {"perceptual_weight": 0.0}, "lia": {"perceptual_weight": 0.0},
                 "fsrt": {"perceptual_weights": [0.0] * 5}}.get(name, {})
    # No parameter needs a gradient here; FlopCounterMode's module tracker trips on parameters passed through
    # unchanged (LIA's constant input) when they still require one.
    return create_model(name, preset="paper", **overrides).eval().requires_grad_(False)


def _training_only(key: str) -> bool:
    return any(part in key.split(".")[0].lower() for part in TRAINING_ONLY)


def _params(model: torch.nn.Module) -> tuple[int, int, int]:
    """(inference parameters, training-only parameters, inference state-dict entries incl. BatchNorm buffers:
    what the official FSRT/LIA counts in ``tests/data/official_state_dict_layouts.json`` add up)."""
    inference = training = 0
    for key, parameter in model.named_parameters():
        if _training_only(key):
            training += parameter.numel()
        else:
            inference += parameter.numel()
    entries = sum(v.numel() for k, v in model.state_dict().items() if not _training_only(k))
    return inference, training, entries


@torch.no_grad()
def _macs(model: torch.nn.Module, frames: int) -> float:
    from reenact.nn.flops import count_macs

    generator = torch.Generator().manual_seed(0)
    source = torch.rand(1, 1, 3, 256, 256, generator=generator)
    driving = torch.rand(1, frames, 3, 256, 256, generator=generator)
    # count_macs also counts torchvision's deform_conv2d (PECHead's MMFA), which FlopCounterMode treats as free.
    return count_macs(lambda: model.animate(source, driving))


@torch.no_grad()
def _seconds(model: torch.nn.Module, frames: int) -> float:
    generator = torch.Generator().manual_seed(1)
    source = torch.rand(1, 1, 3, 256, 256, generator=generator)
    driving = torch.rand(1, frames, 3, 256, 256, generator=generator)
    started = time.perf_counter()
    model.animate(source, driving)
    return time.perf_counter() - started


def measure(name: str) -> dict[str, object]:
    """One model, in this process (the parent runs each model in a fresh child)."""
    import reenact.models  # noqa: F401  (imported before the baseline: import memory is not the model's)

    torch.set_num_threads(2)
    torch.manual_seed(0)
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = _build(name)
    inference, training, entries = _params(model)
    macs_one, macs_two = _macs(model, 1), _macs(model, 2)
    per_frame_macs = macs_two - macs_one
    _seconds(model, 1)  # warm-up: allocator, lazy initialisation, OpenCV
    extra = TIMED_FRAMES[name]
    reference_before = reference_ms()
    # Medians of 3 calls each, so that one slow call on a shared machine does not decide the figure.
    one = statistics.median(_seconds(model, 1) for _ in range(3))
    many = statistics.median(_seconds(model, 1 + extra) for _ in range(3))
    per_frame = (many - one) / extra
    # The yardstick measured in this process around the timed calls: a busy or throttled machine slows both.
    reference = (reference_before + reference_ms()) / 2
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": name, "params": inference, "training_only_params": training, "state_entries": entries,
            "gmacs_one_frame_with_source": round(macs_one / 1e9, 2),
            "gmacs_per_frame": round(per_frame_macs / 1e9, 2), "gmacs_source": round((macs_one - per_frame_macs) / 1e9,
                                                                                       2),
            "ms_per_frame": round(1000 * per_frame, 1), "source_ms": round(1000 * max(one - per_frame, 0.0), 1),
            "frames_timed": extra, "reference_matmul_ms": round(reference, 2),
            "peak_memory_mb": round((peak_kb - baseline_kb) / 1024, 1),
            "baseline_memory_mb": round(baseline_kb / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description="Parameters, MACs, CPU ms per frame and peak memory of every "
                                                 "model's paper preset at 256 px, beside the papers' figures")
    parser.add_argument("--out", default="benchmarks/results/complexity", help="output path without suffix")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        print(json.dumps(measure(options.child)))
        return 0
    torch.set_num_threads(2)
    reference = reference_ms()
    figures = paper_figures()
    rows = []
    for name in options.models.split(","):
        child = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True,
                               check=False)
        if child.returncode != 0:
            raise SystemExit(f"{name}: measurement failed\n{child.stderr[-3000:]}")
        row = json.loads(child.stdout.strip().splitlines()[-1])
        row["ms_per_frame_over_reference"] = round(row["ms_per_frame"] / row["reference_matmul_ms"], 1)
        # The MAC floor: the time this frame's MACs take at the reference matmul's rate (1024^3 MACs).
        floor_ms = row["gmacs_per_frame"] * 1e9 / 1024**3 * row["reference_matmul_ms"]
        row["floor_ms_per_frame"] = round(floor_ms, 1)
        row["ms_per_frame_over_floor"] = round(row["ms_per_frame"] / floor_ms, 2)
        row["paper"] = figures[name]
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr)
    result = {**stamp(), "reference_matmul_ms": round(reference, 2), "rows": rows}

    def million(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f} M"

    lines = ["# Complexity of the paper presets (256 px)", "",
             "| model | params (inference) | state-dict entries | paper / official | training-only params | "
             "GMACs, source + 1 frame | paper GMACs | GMACs per extra frame | CPU ms per frame | x matmul | "
             "x MAC floor | source ms | peak memory |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        paper = row["paper"]
        official = million(paper["params_m"])
        if paper["params_m"] is not None:
            ours = row["params"] if paper["kind"] == "params" else row["state_entries"]
            official += f" ({100 * (ours / 1e6 / paper['params_m'] - 1):+.1f}% {paper['kind']})"
        gmacs = "—"
        if paper["gmacs"] is not None:
            gmacs = f"{paper['gmacs']} ({100 * (row['gmacs_one_frame_with_source'] / paper['gmacs'] - 1):+.1f}%)"
        lines.append(
            f"| `{row['model']}` | {million(row['params'] / 1e6)} | {million(row['state_entries'] / 1e6)} | "
            f"{official} | {million(row['training_only_params'] / 1e6)} | {row['gmacs_one_frame_with_source']} | "
            f"{gmacs} | {row['gmacs_per_frame']} | {row['ms_per_frame']} | {row['ms_per_frame_over_reference']} | "
            f"{row['ms_per_frame_over_floor']} | {row['source_ms']} | {row['peak_memory_mb']} MB |")
    lines += ["", f"Reference: a 1024x1024 float32 matmul took {reference:.2f} ms in the same run. x MAC floor: "
              "ms per frame over the time the frame's MACs would take at the matmul rate measured in the model's own "
              "process around its timed calls (`reference_matmul_ms` per row; 1024^3 MACs).", "",
              "Paper / official figures:"]
    lines += [f"- `{row['model']}`: {row['paper']['source']}" for row in rows]
    lines += ["", "Method: see the docstring of `benchmarks/complexity.py` (animate with T = 1 and T = 1 + N driving "
              "frames; random weights; 2 threads; batch 1; peak RSS above the post-import baseline)."]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
