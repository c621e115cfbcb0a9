"""Train one model's tiny preset with overrides, then score it on FSRT's protocol: a recipe experiment in one run.

    python benchmarks/recipe_check.py keypoint-warp --steps 600 --set lr=1e-3 \
        --set 'generator={warped_source_skip: true}'

Trains on the default synthetic dataset (Lightning Trainer, no validation), then animates the 8 test videos
(source frame 0, every 10th frame at least 10 from it) and prints L1, PSNR, AKD and the share of generated frames
in which dlib's HOG detector finds a face (AKD needs one), beside copy-source's on the same frames. Writes
``<out>.png`` (rows: source + driving frames, source + generated frames) and ``<out>.json``. ``--threads``
(default 1) keeps it fair to other work on the machine; the numbers it prints are the ones the model READMEs'
recipe tables quote.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import frame_l1_psnr, protocol_test_set  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--steps", type=int, default=None, help="trainer.max_steps (default: the preset's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=YAML", help="model hyper-parameter")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ckpt", default=None, help="score this checkpoint of MODEL instead of training one")
    parser.add_argument("--save", default=None, help="also write the trained model as a reenact checkpoint here")
    parser.add_argument("--out", default=None, help="output stem (default: /tmp/recipe_<model>)")
    options = parser.parse_args()

    import lightning as L

    from reenact.data import ReenactDataModule
    from reenact.data.synthetic import dlib_detection_rate
    from reenact.registry import create_model, preset_config

    torch.set_num_threads(options.threads)
    overrides = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in options.set)}
    preset = preset_config(options.model, "tiny")
    steps = options.steps or int(preset["trainer"]["max_steps"])
    L.seed_everything(0)
    train_seconds = 0.0
    if options.ckpt:
        from reenact.registry import load_from_checkpoint

        model, steps = load_from_checkpoint(options.ckpt), 0
    else:
        model = create_model(options.model, "tiny", **overrides)
        datamodule = ReenactDataModule(**dict(preset.get("data") or {}))
        trainer = L.Trainer(max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        started = time.perf_counter()
        trainer.fit(model, datamodule)
        train_seconds = time.perf_counter() - started
        if options.save:
            from reenact.registry import save_checkpoint

            save_checkpoint(model, options.save)

    model.eval()
    dataset = protocol_test_set()
    scores: dict[str, list[float]] = {"l1": [], "psnr": [], "copy_l1": [], "copy_psnr": []}
    from reenact.metrics.face import AKD

    akd = {"": AKD(), "copy_": AKD()}  # the floor check's second metric, as `reenact benchmark` measures it
    generated_frames, rows = [], []
    with torch.no_grad():
        for index, item in enumerate(dataset):
            source, driving = item["source"], item["driving"]
            generated = model.generate_video(source[None], driving[None], False)[0].clamp(0, 1)
            for prefix, output in (("", generated), ("copy_", source[:1].expand_as(driving))):
                frame_l1, frame_psnr = frame_l1_psnr(output, driving)
                scores[f"{prefix}l1"] += frame_l1
                scores[f"{prefix}psnr"] += frame_psnr
                akd[prefix].update(output, driving)
            generated_frames.append(generated)
            if index % 2 == 0:
                rows += [torch.cat([source, driving]), torch.cat([source, generated])]
    frames = (torch.cat(generated_frames).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    out = Path(options.out or f"/tmp/recipe_{options.model}")
    import torchvision

    torchvision.utils.save_image(torch.cat(rows), out.with_suffix(".png"), nrow=rows[0].shape[0])
    result = {"model": options.model, "steps": steps, "overrides": overrides, "threads": options.threads,
              "train_seconds": round(train_seconds, 1),
              **{key: round(float(np.mean(values)), 4) for key, values in scores.items()},
              **{f"{prefix}akd": (None if (r := metric.result()).value is None else round(r.value, 3))
                 for prefix, metric in akd.items()},
              "face_found": round(dlib_detection_rate(frames), 3), "frames": len(frames)}
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
