"""AKD split by face region on the quick benchmark's protocol: where generated faces lose against copy-source.

    python benchmarks/akd_regions.py --ckpt pechead=PATH --ckpt lia=PATH ... --out benchmarks/results/akd_regions

Scores each checkpoint the way ``reenact benchmark`` scores AKD (FOMM's mean absolute landmark difference, dlib
HOG + shape_predictor_68 at 256 x 256 on frames upsampled from 64 px; frames without a face on either side are
skipped) on the same-identity protocol of the default synthetic dataset (source frame 0, every 10th frame at
least 10 frames from it: 48 frames of 8 test videos), and reports it per iBUG-68 region: jaw (0-16), brows
(17-26), nose (27-35), eyes (36-47), mouth (48-67). Two reference rows put the numbers in scale:

* ``copy-source``: the source frame itself (the floor of the benchmark's check);
* ``driving, k px detail``: the driving frame average-pooled by ``k`` and upsampled back (perfect motion, no
  detail finer than ``k`` pixels, as in ``benchmarks/detail_floor.py``);
* ``dlib vs annotation``: dlib's landmarks on the *driving* frames against the dataset's own annotated landmarks
  of those frames (mapped from 64 px to 256 px pixel centres), i.e. the detector's error on the real frames.
  It is a different landmark definition (the synthetic renderer's points vs dlib's), so it bounds from below
  what a perfect generator could score, not a value to subtract.

Each checkpoint animates absolutely (``generate_video(source, driving, relative=False)``), as the benchmark does.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import at_detail, protocol_test_set, stamp, write  # noqa: E402

REGIONS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
           "mouth": range(48, 68)}


def region_scores(found: list[np.ndarray | None], reference: list[np.ndarray | None]) -> dict[str, Any]:
    """Mean AKD over the frames where both sides have landmarks, overall and per region."""
    pairs = [(a, b) for a, b in zip(found, reference, strict=True) if a is not None and b is not None]
    row: dict[str, Any] = {"frames": len(pairs), "of": len(found)}
    if not pairs:
        return row
    diff = np.abs(np.stack([a for a, _ in pairs]).astype(np.float64) - np.stack([b for _, b in pairs]))
    row["akd"] = round(float(diff.mean()), 3)
    for name, index in REGIONS.items():
        row[name] = round(float(diff[:, list(index)].mean()), 3)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", action="append", default=[], metavar="NAME=PATH", help="a checkpoint to score")
    parser.add_argument("--out", default="benchmarks/results/akd_regions", help="output path without suffix")
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    checkpoints = dict(item.split("=", 1) for item in options.ckpt)
    for name, path in checkpoints.items():
        if not Path(path).is_file():
            raise SystemExit(f"--ckpt {name}: no such file: {path}")

    from reenact.face.landmarks import get_landmark_backend
    from reenact.metrics.face import EVAL_SIZE, detect_landmarks, to_uint8_frames
    from reenact.registry import load_from_checkpoint

    torch.set_num_threads(options.threads)
    backend = get_landmark_backend("dlib")
    reason = backend.unavailable_reason()
    if reason:
        raise SystemExit(f"dlib landmarks unavailable: {reason}")
    items = list(protocol_test_set())

    def landmarks(frames: torch.Tensor) -> list[np.ndarray | None]:
        return detect_landmarks(backend, "dlib", to_uint8_frames(frames, EVAL_SIZE))

    driving = [points for item in items for points in landmarks(item["driving"])]
    scale = EVAL_SIZE / items[0]["driving"].shape[-1]
    annotated = [((points.numpy().astype(np.float64) + 0.5) * scale - 0.5) for item in items
                 for points in item["driving_landmarks"]]
    rows = {"dlib vs annotation": region_scores(driving, annotated)}
    copies = [points for item in items
              for points in landmarks(item["source"][:1].expand_as(item["driving"]))]
    rows["copy-source"] = region_scores(copies, driving)
    for factor in (2, 4):  # the driving frame itself with detail no finer than factor x factor pixels
        blurred = [points for item in items for points in landmarks(at_detail(item["driving"], factor))]
        rows[f"driving, {factor} px detail"] = region_scores(blurred, driving)
    for name, path in checkpoints.items():
        model = load_from_checkpoint(path).eval()
        with torch.no_grad():
            generated = [points for item in items for points in landmarks(
                model.generate_video(item["source"][None], item["driving"][None], False)[0].clamp(0, 1))]
        rows[name] = region_scores(generated, driving)
        print(name, rows[name], file=sys.stderr)
    result = {**stamp(), "checkpoints": checkpoints, "rows": rows}
    columns = ["akd", *REGIONS]
    lines = ["# AKD per face region (quick benchmark protocol, 48 frames)", "",
             "| output | frames with a face | " + " | ".join(columns) + " |",
             "|---|---|" + "---|" * len(columns)]
    for name, row in rows.items():
        values = " | ".join(f"{row[c]:.2f}" if c in row else "n/a" for c in columns)
        lines.append(f"| `{name}` | {row['frames']}/{row['of']} | {values} |")
    lines += ["", "AKD in pixels at 256 x 256 against dlib's landmarks on the driving frames (first row: against the "
              "annotations). Method: the docstring of `benchmarks/akd_regions.py`.", "",
              "Checkpoints: " + ", ".join(f"`{k}` = `{v}`" for k, v in checkpoints.items())]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
