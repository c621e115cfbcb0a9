"""Helpers shared by the benchmark scripts: machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ROOT / "tests" / "data" / "official_state_dict_layouts.json"


def machine() -> dict[str, Any]:
    """What the numbers were measured on, including how busy it was (1-minute load average)."""
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "load_average_1min": round(os.getloadavg()[0], 2)}


def command() -> str:
    return " ".join(["python", *sys.argv])


def write(out: str | Path, result: dict[str, Any], markdown: list[str]) -> None:
    """``<out>.json`` and ``<out>.md``; the Markdown starts with the command, machine and date."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [f"Command: `{result['command']}`  ", f"Machine: {result['machine']}  ", f"Date: {result['date']}", ""]
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    text = "\n".join([markdown[0], "", *header, *markdown[1:], ""])
    out.with_suffix(".md").write_text(text)
    print(text)


def stamp() -> dict[str, Any]:
    return {"command": command(), "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def reference_ms(repeats: int = 20) -> float:
    """Median ms of a 1024x1024 float32 matmul on this machine, measured now: the yardstick that model
    timings are divided by, so runs on busy or different machines stay comparable."""
    import statistics

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    times = []
    for _ in range(repeats + 2):
        started = time.perf_counter()
        a @ b
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times[2:])


def protocol_test_set() -> Any:
    """The quick benchmark's same-identity protocol (FSRT Sec. 4.1: source frame 0, every 10th frame at least 10
    frames from it) on the default synthetic dataset's test videos at 64 px: a ``SameIdentityDataset`` whose items
    carry ``source [S, 3, 64, 64]`` and ``driving [T, 3, 64, 64]``."""
    from reenact.data.discovery import discover
    from reenact.data.protocols import SameIdentityDataset
    from reenact.data.synthetic import ensure_default_dataset

    records = discover(ensure_default_dataset(), "test")
    return SameIdentityDataset(records, 64, None, frame_stride=10, min_source_distance=10, source_placement="ends")


def frame_l1_psnr(output: torch.Tensor, target: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-frame L1 and PSNR (data range 1) of ``output`` against ``target``, both ``[T, 3, H, W]`` in ``[0, 1]``,
    as the benchmark's ``l1`` and ``psnr`` metrics define them."""
    mse = ((output - target) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-10)
    return (output - target).abs().mean(dim=(1, 2, 3)).tolist(), (10 * torch.log10(1 / mse)).tolist()


def at_detail(images: torch.Tensor, factor: int) -> torch.Tensor:
    """``images [T, 3, H, W]`` average-pooled by ``factor`` and bilinearly upsampled back to ``H x W``."""
    if factor == 1:
        return images
    pooled = F.avg_pool2d(images, factor)
    return F.interpolate(pooled, size=images.shape[-2:], mode="bilinear", align_corners=False)
