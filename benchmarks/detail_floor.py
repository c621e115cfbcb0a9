"""How much image detail the quick benchmark's metrics need: L1, PSNR and AKD of blurred copies (issue 11).

    python benchmarks/detail_floor.py --out benchmarks/results/detail_floor

On the benchmark's same-identity protocol (FSRT Sec. 4.1: source frame 0, every 10th frame at least 10 frames
from it; the 8 test videos of the default synthetic dataset at 64 px), every frame is scored as
``reenact benchmark`` scores a model, for two kinds of output at ``k x k`` detail (average pooling by ``k``, then
bilinear upsampling back to 64 px):

* ``source``: the source frame at that detail (copy-source, blurred);
* ``driving``: the driving frame itself at that detail: an oracle with perfect motion whose only error is the
  missing detail.

A decoder that renders one set-latent token per ``k x k`` patch and no finer detail (FSRT's tiny preset: 3
stride-2 patch-CNN blocks, 8 x 8 px tokens, Sec. 3.1) is bounded by the ``driving`` row at its ``k`` unless it
learns sub-patch detail from the pixel encodings. AKD needs dlib's HOG detector to find a face in the generated
frame (``face found``); where it finds none, AKD is undefined and the model cannot beat copy-source on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import at_detail, frame_l1_psnr, protocol_test_set, stamp, write  # noqa: E402

FACTORS = (1, 2, 4, 8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results/detail_floor", help="output stem (.json and .md)")
    options = parser.parse_args()

    from reenact.data.synthetic import dlib_detection_rate
    from reenact.metrics.face import AKD

    torch.set_num_threads(1)
    items = [(item["source"][:1], item["driving"]) for item in protocol_test_set()]
    rows = []
    for kind in ("source", "driving"):
        for factor in FACTORS:
            akd, l1, psnr, frames = AKD(), [], [], []
            for source, driving in items:
                output = at_detail(source if kind == "source" else driving, factor).expand_as(driving)
                frame_l1, frame_psnr = frame_l1_psnr(output, driving)
                l1 += frame_l1
                psnr += frame_psnr
                akd.update(output, driving)
                frames.append(output)
            uint8 = (torch.cat(frames).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
            value = akd.result().value
            rows.append({"output": kind, "detail_px": factor, "l1": round(float(np.mean(l1)), 4),
                         "psnr": round(float(np.mean(psnr)), 2), "akd": None if value is None else round(value, 3),
                         "face_found": round(dlib_detection_rate(uint8), 3), "frames": len(uint8)})
            print(rows[-1], flush=True)
    result = {**stamp(), "protocol": "fsrt (source frame 0, every 10th frame >= 10 from it), 8 test videos, 64 px",
              "rows": rows}
    lines = ["# Detail the benchmark's metrics need (64 px, same-identity protocol)", "",
             "| output | detail | L1 | PSNR | AKD | face found |", "|---|---|---|---|---|---|"]
    for row in rows:
        akd_text = "n/a (no face)" if row["akd"] is None else f"{row['akd']:.3f}"
        lines.append(f"| {row['output']} | {row['detail_px']} x {row['detail_px']} px | {row['l1']:.4f} | "
                     f"{row['psnr']:.2f} | {akd_text} | {row['face_found']:.0%} |")
    lines += ["", "`source` at 1 px is copy-source. Method: see the docstring of `benchmarks/detail_floor.py`."]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
