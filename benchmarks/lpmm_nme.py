"""LPMM Table 1 (paper 004): NME of the trained LP-regressor against the number of parameters k, on held-out
identities of the synthetic dataset.

    python benchmarks/lpmm_nme.py --out benchmarks/results/lpmm_nme --steps 200

For each k an LPMM (``tiny`` sizes: 64 px, MobileNetV2 regressor from scratch, no ImageNet weights offline) fits
its landmark basis on the training split's annotations and trains the LP-regressor for ``--steps`` steps; the
test split's NME (mean landmark error / inter-ocular distance, Eq. 5) of the regressor's reconstruction is then
measured by ``reenact``'s test loop (``test/lp_nme``). The PCA basis bound (projecting the true landmarks) is
reported beside it. The regressor does not use the LIA backbone, so a randomly initialised tiny LIA checkpoint
stands in for it; the adaptor stage is skipped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import stamp, write  # noqa: E402

KS = (5, 10, 20, 40, 136)


def lia_checkpoint(path: Path) -> Path:
    import reenact
    from reenact.models import create_model

    torch.manual_seed(0)
    lia = create_model("lia", preset="tiny")
    torch.save({"state_dict": lia.state_dict(), "hyper_parameters": dict(lia.hparams),
                "reenact": {"model": "lia", "version": reenact.__version__}}, path)
    return path


def run(k: int, steps: int, backbone: Path, folder: Path) -> dict[str, float]:
    import lightning as L

    from reenact.data import ReenactDataModule
    from reenact.models import create_model

    torch.manual_seed(0)
    model = create_model("lpmm", preset="tiny", backbone_ckpt=str(backbone), num_params=k, regressor_steps=steps,
                         adaptor_steps=0, evaluation={"metrics": ["l1"]})
    data = ReenactDataModule(image_size=model.image_size, batch_size=16, repeats=8, max_frames_per_video=8,
                             num_cross_identity_pairs=2)
    trainer = L.Trainer(accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        use_distributed_sampler=False, default_root_dir=folder / f"k{k}")
    started = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - started
    metrics = trainer.test(model, datamodule=data, verbose=False)[0]
    test_frames = torch.cat([torch.from_numpy(np.load(r.annotation)["landmarks"]) for r in data.records["test"]])
    test_frames = test_frames.double()
    height = data.records["test"][0].height
    scaled = test_frames * model.image_size / height
    bound = 100.0 * float(model.pca.double().reconstruction_nme(scaled, model.image_size, k))  # percent
    return {"k": k, "regressor_nme": float(metrics["test/lp_nme"]), "basis_bound_nme": bound,
            "train_seconds": round(seconds, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description="LPMM LP-regressor NME against k (paper 004, Table 1)")
    parser.add_argument("--out", default="benchmarks/results/lpmm_nme", help="output path without suffix")
    parser.add_argument("--steps", type=int, default=200, help="regressor training steps per k (default 200)")
    options = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        backbone = lia_checkpoint(Path(folder) / "lia.ckpt")
        rows = [run(k, options.steps, backbone, Path(folder)) for k in KS]
    result = {**stamp(), "steps": options.steps, "rows": rows}
    lines = [
        "# LPMM: LP-regressor NME against k (Table 1), synthetic held-out identities",
        f"{options.steps} regressor steps per k, batch 16, 64 px; NME in % of the inter-ocular distance.", "",
        "| k | LP-regressor NME | PCA basis bound | training time |", "|---|---|---|---|",
        *[f"| {r['k']} | {r['regressor_nme']:.2f} | {r['basis_bound_nme']:.3f} | {r['train_seconds']} s |"
          for r in rows],
    ]
    write(options.out, result, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
