"""LIA and LPMM benchmark (issue 6): parameters against the official count, CPU ms per frame at 256 px,
and LPMM's landmark NME against the number of PCA components k (paper 004, Table 1 rows).

    python benchmarks/lia_lpmm.py --out benchmarks/results/lia_lpmm

Writes ``<out>.json`` and ``<out>.md`` with the command, the machine and the numbers.

* Parameters: the ``paper`` preset's generator, against the sum of the official state-dict shapes in
  ``tests/data/official_state_dict_layouts.json`` (``lia`` → ``generator``), counted the same way.
* Speed: the LIA generator at 256 px on CPU, ``torch.set_num_threads(2)``, batch 1, random weights (speed
  does not depend on their values). The source is encoded once per video (appearance code, skip features
  and its motion magnitudes); each driving frame then costs one encoder pass and one synthesis pass,
  which is what ``animate`` does per frame. Reported as the median over timed frames, after warm-up.
* NME vs k: the landmark-parameter model (Eq. 1) fitted on the synthetic dataset's training landmarks and
  evaluated on held-out test identities: the NME (mean point error / inter-ocular distance) of projecting
  the held-out landmarks onto the first k components and reconstructing them. This is the basis bound of
  Table 1 (the error a perfect LP-regressor would reach); the regressor's own NME is logged as
  ``val/lp_nme`` / ``test/lp_nme`` by ``reenact fit/test --model lpmm``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import LAYOUTS, reference_ms, stamp, write  # noqa: E402


def parameters() -> dict[str, object]:
    from reenact.models import create_model

    with torch.device("meta"):
        model = create_model("lia", preset="paper", perceptual_weight=0.0)
    generator = model.generator
    count = sum(p.numel() for p in generator.state_dict().values())
    official = json.loads(LAYOUTS.read_text())["lia"]["generator"]
    official_count = sum(math.prod(shape) for shape in official.values())
    encoder = sum(v.numel() for k, v in generator.state_dict().items() if k.startswith("enc."))
    return {"reenact_generator": count, "official_generator": official_count, "reenact_encoder": encoder,
            "reenact_decoder": count - encoder, "equal": count == official_count}


@torch.no_grad()
def speed(frames: int = 10, warmup: int = 2) -> dict[str, object]:
    from reenact.models.lia.torch_model import LIAGenerator

    torch.manual_seed(0)
    generator = LIAGenerator(size=256).eval()
    source = torch.rand(1, 3, 256, 256) * 2 - 1
    started = time.perf_counter()
    w_a, feats = generator.encode(source)
    source_ms = 1000 * (time.perf_counter() - started)
    times = []
    for index in range(warmup + frames):
        driving = torch.rand(1, 3, 256, 256) * 2 - 1
        started = time.perf_counter()
        alpha = generator.motion(driving)
        generator.synthesize(w_a, feats, alpha)
        if index >= warmup:
            times.append(1000 * (time.perf_counter() - started))
    return {"source_encoding_ms": round(source_ms, 1), "ms_per_frame_median": round(statistics.median(times), 1),
            "ms_per_frame_min": round(min(times), 1), "frames_timed": frames}


def nme_vs_k(ks: tuple[int, ...] = (5, 10, 20, 40, 136)) -> dict[str, object]:
    from reenact.data import discover
    from reenact.data.synthetic import ensure_default_dataset
    from reenact.models.lpmm.pca import LandmarkPCA

    root = ensure_default_dataset(progress=False)

    def landmarks(split: str) -> tuple[torch.Tensor, int]:
        records = discover(root, split)
        points = []
        size = records[0].height
        for record in records:
            with np.load(record.annotation) as truth:
                points.append(truth["landmarks"])
        return torch.from_numpy(np.concatenate(points)).double(), size

    train, size = landmarks("train")
    test, _ = landmarks("test")
    pca = LandmarkPCA(num_components=136).double().fit_landmarks(train, size)
    rows = {k: float(pca.reconstruction_nme(test, size, k)) for k in ks}
    return {"dataset": str(root), "train_frames": int(train.shape[0]), "test_frames": int(test.shape[0]),
            "image_size": size, "nme_by_k": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/lia_lpmm", help="output path without suffix")
    parser.add_argument("--frames", type=int, default=10, help="timed frames (default 10)")
    options = parser.parse_args()
    torch.set_num_threads(2)
    reference = reference_ms()
    result = {**stamp(), "reference_matmul_1024_ms": round(reference, 2), "parameters": parameters(),
              "speed_256px_cpu": speed(options.frames),
              "nme_vs_k": nme_vs_k()}
    p, s, n = result["parameters"], result["speed_256px_cpu"], result["nme_vs_k"]
    lines = [
        "# LIA / LPMM benchmark",
        "## Parameters (paper preset, generator state-dict entries)", "",
        "| | reenact | official (wyhsirius/LIA) |", "|---|---|---|",
        f"| generator | {p['reenact_generator']:,} | {p['official_generator']:,} |",
        f"| encoder / decoder | {p['reenact_encoder']:,} / {p['reenact_decoder']:,} | 22.70 M / 22.42 M |", "",
        "## CPU speed at 256 px (2 threads, batch 1, source encoded once)", "",
        f"- source encoding: {s['source_encoding_ms']} ms (once per video)",
        f"- per driving frame: {s['ms_per_frame_median']} ms median, {s['ms_per_frame_min']} ms best "
        f"({s['frames_timed']} frames); {s['ms_per_frame_median'] / reference:.0f}x a 1024x1024 float32 matmul "
        f"measured in the same run ({reference:.2f} ms)", "",
        "## LPMM landmark NME vs k (PCA basis bound, synthetic held-out identities)", "",
        f"Fitted on {n['train_frames']} training frames, evaluated on {n['test_frames']} test frames "
        f"({n['image_size']} px).", "", "| k | NME (% of inter-ocular distance) |", "|---|---|",
        *[f"| {k} | {100 * v:.3f} |" for k, v in n["nme_by_k"].items()],
    ]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
