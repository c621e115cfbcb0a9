"""Evaluator throughput benchmark (issue 3): frames per second of every registered metric on CPU.

    python benchmarks/evaluators.py --out benchmarks/results/evaluators

Writes ``<out>.json`` and ``<out>.md`` with the command, the machine (with its load average at the start and
the end: the machine may be shared with other jobs) and the numbers.

* Metrics: every name in ``reenact.metrics.list_metrics()``. A metric that cannot run here (weights or package
  missing) is listed with its reason instead of a number. For LPIPS without the torchvision AlexNet ImageNet
  weights, a second row times the same network with a *randomly initialised* AlexNet backbone (speed does not
  depend on weight values; its values are meaningless and are not reported).
* Inputs: synthetic talking-head frames (``reenact.data.synthetic.render_video``, the faces dlib detects) at
  64 px and 256 px, float32 ``[N, 3, S, S]`` in [0, 1]. Generated and driving frames are two clips of the same
  identity; ``source`` (CSIM) is a third clip's first frame.
* Frame metrics: one ``update`` on ``--frames`` generated/driving pairs (default 24). FVD needs clips of 16
  consecutive frames and at least 2 clips for a value: it gets ``--fvd-videos`` (default 2) videos of 16 frames,
  one ``update`` per video as the evaluation loop does; its frames per second count generated frames (each also
  costs one driving frame). Every other metric also processes the driving frame of each pair (FID, face
  metrics) or the pair jointly (pixel metrics, LPIPS).
* Timing: ``torch.set_num_threads(2)``, CPU. The metric is built, warmed up on 2 pairs (networks load at the
  first update and are cached per process; FVD warms up on one 16-frame video), reset, then timed over
  ``update`` (``update_s``) and ``result()`` (``result_s``; the Fréchet distance for FID/FVD). ``fps`` =
  generated frames / (update + result time). Face metrics cache detections by frame content; the cache is
  cleared before each timed run, so each face metric is timed as if it ran alone (in an evaluation the
  landmark metrics share detections, so running all of them costs less than the sum of the rows).
* Reference: the median of a 1024x1024 float32 matmul measured in the same run; ``ms_per_frame / reference``
  makes runs on busy or different machines comparable.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import reference_ms, stamp, write  # noqa: E402

SIZES = (64, 256)
CLIP = 16


def synthetic_frames(count: int, size: int, clip: int, identity: int = 0) -> torch.Tensor:
    """``[count, 3, size, size]`` float32 in [0, 1] of one synthetic clip."""
    from reenact.data.synthetic import render_video

    video, _ = render_video(identity, clip=clip, frames=count, size=size, seed=0)
    return torch.from_numpy(np.ascontiguousarray(video)).permute(0, 3, 1, 2).float().div(255)


def _clear_face_cache() -> None:
    from reenact.metrics import face

    face._LANDMARK_CACHE.clear()


def _updates(name: str, frames: int, size: int, videos: int) -> list[tuple[torch.Tensor, torch.Tensor, dict]]:
    """The ``update`` calls of one timed run: (generated, driving, context) per call."""
    source = synthetic_frames(1, size, clip=2)[None]  # [B=1, S=1, 3, H, W]
    if name == "fvd":
        calls = []
        for video in range(videos):
            generated = synthetic_frames(CLIP, size, clip=10 + 2 * video)
            driving = synthetic_frames(CLIP, size, clip=11 + 2 * video)
            calls.append((generated, driving, {"source": source}))
        return calls
    return [(synthetic_frames(frames, size, clip=0), synthetic_frames(frames, size, clip=1), {"source": source})]


def time_metric(metric: Any, name: str, frames: int, size: int, videos: int) -> dict[str, Any]:
    calls = _updates(name, frames, size, videos)
    warm = calls[0] if name == "fvd" else (calls[0][0][:2], calls[0][1][:2], calls[0][2])
    _clear_face_cache()
    metric.update(warm[0], warm[1], **warm[2])
    metric.reset()
    _clear_face_cache()
    started = time.perf_counter()
    for generated, driving, context in calls:
        metric.update(generated, driving, **context)
    updated = time.perf_counter()
    result = metric.result()
    finished = time.perf_counter()
    count = sum(int(c[0].shape[0]) for c in calls)
    total = finished - started
    return {"size": size, "generated_frames": count, "update_s": round(updated - started, 4),
            "result_s": round(finished - updated, 4), "fps": _sig(count / total),
            "ms_per_frame": _sig(1000 * total / count), "counted": result.count, "reason": result.reason}


def _sig(value: float, digits: int = 3) -> float:
    """``value`` rounded to ``digits`` significant figures (pixel metrics take microseconds per frame)."""
    return float(f"{value:.{digits}g}")


def random_lpips_backbone(folder: Path) -> Path:
    """Randomly initialised torchvision AlexNet features saved as the LPIPS backbone file (timing only)."""
    import torchvision

    from reenact.weights import get_spec

    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in torchvision.models.alexnet(weights=None).features.state_dict().items()}
    path = folder / get_spec("lpips-alex").files[0]
    torch.save(state, path)
    return path


def benchmark(frames: int, videos: int, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    from reenact.metrics import get_metric_class, list_metrics

    rows: list[dict[str, Any]] = []
    for name in list_metrics():
        cls = get_metric_class(name)
        metric = cls()
        reason = metric.unavailable_reason()
        row: dict[str, Any] = {"name": name, "protocols": list(cls.protocols), "available": reason is None,
                               "backend": metric.backend(), "reason": reason, "runs": []}
        rows.append(row)
        if reason is None:
            for size in sizes:
                print(f"timing {name} at {size} px", flush=True)
                try:
                    row["runs"].append(time_metric(cls(), name, frames, size, videos))
                except Exception as error:  # a failing metric gets a row with the error, the others still run
                    traceback.print_exc()
                    row["runs"].append({"size": size, "error": f"{type(error).__name__}: {error}"})
        elif name == "lpips":
            with tempfile.TemporaryDirectory() as folder:
                path = random_lpips_backbone(Path(folder))
                previous = os.environ.get("REENACT_WEIGHTS_LPIPS_ALEX")
                os.environ["REENACT_WEIGHTS_LPIPS_ALEX"] = str(path)
                try:
                    timing = {"name": "lpips (random AlexNet backbone, timing only)", "protocols": row["protocols"],
                              "available": True, "backend": cls().backend().replace(str(path), "<temporary file>"),
                              "reason": "timing only: randomly initialised backbone, values are not LPIPS",
                              "runs": []}
                    for size in sizes:
                        print(f"timing lpips (random backbone) at {size} px", flush=True)
                        timing["runs"].append(time_metric(cls(), name, frames, size, videos))
                    rows.append(timing)
                finally:
                    if previous is None:
                        os.environ.pop("REENACT_WEIGHTS_LPIPS_ALEX", None)
                    else:
                        os.environ["REENACT_WEIGHTS_LPIPS_ALEX"] = previous
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/evaluators", help="output path without suffix")
    parser.add_argument("--frames", type=int, default=24, help="generated/driving pairs per frame metric")
    parser.add_argument("--fvd-videos", type=int, default=2, help="16-frame videos for FVD (>= 2 for a value)")
    options = parser.parse_args()
    torch.set_num_threads(2)
    load_start = [round(x, 2) for x in os.getloadavg()]
    reference = reference_ms()
    rows = benchmark(options.frames, options.fvd_videos, SIZES)
    reference_end = reference_ms()
    load_end = [round(x, 2) for x in os.getloadavg()]
    # This job keeps 2 threads busy, so a load near 2 is its own. Another job shows as a load beyond the cores
    # or as a reference matmul that got slower during the run.
    cores = os.cpu_count() or 1
    shared = max(load_start[0], load_end[0]) > cores + 0.5 or reference_end > 1.3 * reference
    result = {**stamp(), "reference_matmul_1024_ms": round(reference, 2),
              "reference_matmul_1024_ms_end": round(reference_end, 2),
              "load_average_start": load_start, "load_average_end": load_end, "shared_machine": shared,
              "frames": options.frames, "fvd_videos": options.fvd_videos, "fvd_clip_frames": CLIP,
              "sizes": list(SIZES), "metrics": rows}
    for row in rows:
        for run in row["runs"]:
            if "ms_per_frame" in run:
                run["ms_per_frame_over_reference"] = _sig(run["ms_per_frame"] / reference)

    def cell(row: dict[str, Any], size: int) -> str:
        run = next((r for r in row["runs"] if r["size"] == size), None)
        if run is None:
            return "-"
        if "error" in run:
            return f"error: {run['error']}"
        return f"{run['fps']:g} fps ({run['ms_per_frame']:g} ms, {run['ms_per_frame_over_reference']:g}x)"

    available = [r for r in rows if r["available"]]
    unavailable = [r for r in rows if not r["available"]]
    lines = [
        "# Evaluator throughput (CPU, 2 threads)",
        f"Reference: 1024x1024 float32 matmul, median {reference:.2f} ms at the start of the run and "
        f"{reference_end:.2f} ms at the end. Load average (1, 5, 15 min): {load_start} at the start, {load_end} at "
        "the end (this job's own 2 threads count in it)" + (
            "; **the machine was shared with other jobs (load beyond the cores, or the reference slowed down), so "
            "timings are noisy**." if shared else "; no sign of another job."), "",
        f"Synthetic frames (`render_video`), {options.frames} generated/driving pairs per frame metric; FVD: "
        f"{options.fvd_videos} videos of {CLIP} frames (one clip each, the minimum for a value), resized to 224 "
        "by the metric. Face metrics analyse every frame at 256x256 whatever the input size. Each cell: "
        "generated frames per second over update + result, ms per generated frame, and that time over the "
        "reference matmul. Each face metric is timed with a cold detection cache (alone); in an evaluation the "
        "landmark-based metrics share detections.", "",
        "| metric | protocols | " + " | ".join(f"{s} px" for s in SIZES) + " | backend |",
        "|---|---|" + "---|" * len(SIZES) + "---|",
        *[f"| {r['name']} | {', '.join(r['protocols'])} | " + " | ".join(cell(r, s) for s in SIZES)
          + f" | {r['backend']} |" for r in available],
    ]
    if unavailable:
        lines += ["", "## Unavailable here", "", "| metric | reason |", "|---|---|",
                  *[f"| {r['name']} | {r['reason'].splitlines()[0]} (see the JSON for where it was looked for) |"
                    for r in unavailable]]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
