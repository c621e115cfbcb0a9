"""What the validation and test hooks of :class:`reenact.models.base.ReenactmentModule` do, for every model: one
evaluation step (generate the video, update the protocols' metrics, run the editing protocol), the validation
logs and sample grid, and the test's results payload and files.

The functions take the module (a LightningModule attached to a trainer) and use only its public contract:
``generate_video``, ``edit_image`` and the state the hooks keep (``evaluation``, ``evaluator``).
"""

from __future__ import annotations

import datetime as _dt
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch.utilities import rank_zero_info

import reenact
from reenact.evaluation.results import results_table, write_results
from reenact.evaluation.samples import sample_grid, write_sample_grid
from reenact.metrics import CROSS_IDENTITY, SAME_IDENTITY

if TYPE_CHECKING:
    from reenact.models.base import ReenactmentModule


def batch_protocol(batch: dict[str, Any]) -> str:
    """The protocol name of a collated evaluation batch (one protocol per batch)."""
    protocol = batch["protocol"]
    return protocol[0] if isinstance(protocol, (list, tuple)) else protocol


@torch.no_grad()
def edit_in_chunks(module: ReenactmentModule, source: torch.Tensor, **edits: torch.Tensor) -> torch.Tensor:
    """``module.edit_image`` over ``source [N, 3, H, W]`` in chunks of ``evaluation.chunk`` images (``edits``:
    ``[N, ...]`` each), bounding memory."""
    chunk = module.evaluation.chunk
    return torch.cat([module.edit_image(source[i:i + chunk], **{k: v[i:i + chunk] for k, v in edits.items()})
                      for i in range(0, source.shape[0], chunk)])


def evaluation_step(module: ReenactmentModule, batch: dict[str, Any]) -> torch.Tensor:
    """Generate one protocol batch's video and score it: ``[B, T, 3, H, W]`` generated frames.

    A padding batch (a repeat that keeps DDP ranks in step) is generated but not counted. When the evaluator
    holds the editing protocol (test), the batch's frames are also edited and scored (module docstring of
    :mod:`reenact.models.base`).
    """
    generated = module.generate_video(batch["source"], batch["driving"], module.evaluation.relative)
    if "padding" in batch and bool(batch["padding"][0]):
        return generated
    protocol = batch_protocol(batch)
    module.evaluator.update(protocol, batch, generated)
    if module.evaluator.edits:
        module.evaluator.update_editing(batch, protocol, partial(edit_in_chunks, module), module.editing_frame_stride)
    return generated


def log_validation(module: ReenactmentModule) -> None:
    """``val/<protocol>/<metric>`` for every value of the epoch (the same-identity L1 on the progress bar)."""
    for protocol, section in module.evaluator.collect(module.editing_frame_stride).items():
        for metric in section["metrics"]:
            if metric["value"] is not None:
                # Values are already reduced over processes by torchmetrics.
                module.log(f"val/{protocol}/{metric['name']}", metric["value"], sync_dist=False,
                           prog_bar=protocol == SAME_IDENTITY and metric["name"] == "l1")


def output_dir(module: ReenactmentModule) -> Path:
    """The run's folder (``runs/<model>/version_N``). A collective under DDP: call it on every rank."""
    return Path(module.trainer.log_dir or module.trainer.default_root_dir)


def test_results(module: ReenactmentModule) -> dict[str, Any]:
    """The test epoch's results payload (what ``results.json`` holds): the model, checkpoint, dataset, motion
    mode and every protocol's metrics; the cross-identity section lists its pairs."""
    sections = module.evaluator.collect(module.editing_frame_stride)
    trainer = module.trainer
    datamodule = getattr(trainer, "datamodule", None)
    pairs = getattr(datamodule, "cross_identity_pairs_list", None)
    if CROSS_IDENTITY in sections and pairs is not None:
        sections[CROSS_IDENTITY]["pairs"] = [list(p) for p in pairs]
    return {
        "model": module.registry_name,
        "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None,
        # True only when a trainable model was scored without a checkpoint on purpose (`--untrained`).
        "untrained": bool(getattr(module, "untrained_evaluation", False)),
        "reenact_version": reenact.__version__,
        "dataset": datamodule.describe() if hasattr(datamodule, "describe") else None,
        "relative": module.evaluation.relative,
        "world_size": trainer.world_size,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "protocols": sections,
    }


def finish_test(module: ReenactmentModule) -> dict[str, Any]:
    """Collect the test epoch (:func:`test_results`), keep it as ``module.evaluation_results``, and on rank 0
    write ``results.json``/``results.md`` into the run's folder, print the table and log the values."""
    payload = module.evaluation_results = test_results(module)
    directory = output_dir(module)  # a broadcast under DDP: every rank must read it, not only rank 0
    if module.trainer.is_global_zero:
        json_path, md_path = write_results(directory, payload)
        from rich.console import Console

        Console().print(results_table(payload))
        rank_zero_info(f"results written to {json_path} and {md_path}")
        # Straight to the loggers: module.log here would file every value under each test dataloader.
        values = {f"test/{protocol}/{metric['name']}": metric["value"]
                  for protocol, section in payload["protocols"].items()
                  for metric in section["metrics"] if metric["value"] is not None}
        for logger in module.loggers:
            logger.log_metrics(values, step=module.global_step)
    return payload


def write_validation_samples(module: ReenactmentModule, batch: dict[str, Any], generated: torch.Tensor) -> None:
    """A PNG of rows source | driving | generated for the first frames of the first validation video, in the
    run's ``samples/`` folder, and to a logger that shows images (TensorBoard)."""
    directory = output_dir(module) / "samples"
    if not module.trainer.is_global_zero:
        return
    grid = sample_grid(batch, generated, module.evaluation.sample_frames)
    write_sample_grid(directory, f"epoch{module.current_epoch:03d}_step{module.global_step:07d}.png", grid)
    for logger in module.loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_image"):
            experiment.add_image("samples/source_driving_generated", grid, module.global_step)


__all__ = ["batch_protocol", "edit_in_chunks", "evaluation_step", "finish_test", "log_validation", "output_dir",
           "test_results", "write_validation_samples"]
