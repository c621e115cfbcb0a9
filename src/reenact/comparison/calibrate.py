"""A time budget becomes a step budget: a short warm-up of every training stage, measured once.

``reenact benchmark --budget 10min`` must still train on a step budget (a wall-clock limit would depend on machine
load and cut every step-counted schedule short). So before training, each training stage of each model runs for
:data:`WARMUP_STEPS` steps with :class:`reenact.training.timing.StepTimer`; its steady-state seconds per step give
the time the model's preset schedule would take, and the model's main-stage steps are scaled so that the whole
model (prerequisite stages included) fills the budget. The result is saved as ``calibration.json`` in ``--out``
(a resumed benchmark reuses it: the conversion is done once) and written in the report.

Warm-up steps see only the start of a schedule (e.g. FSRT's keypoint pretraining, which costs less per step than
its later phases); the conversion is an estimate, the step count it gives is exact and reproducible.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reenact.comparison.plan import Budget, Stage, plan_model
from reenact.comparison.runner import StageFailed, StageRunner, write_json
from reenact.training.timing import STEP_TIMES_ENV

#: Optimiser steps each training stage runs in the warm-up.
WARMUP_STEPS = 20


def _warmup_stage(stage: Stage) -> Stage:
    return Stage(key=f"warmup.{stage.key}", model=stage.model, command="fit", owner=stage.owner,
                 args=list(stage.args),
                 checkpoint_args={option: f"warmup.{key}" for option, key in stage.checkpoint_args.items()},
                 max_steps=min(WARMUP_STEPS, stage.max_steps or WARMUP_STEPS))


def calibrate(models: list[str], preset: str, budget: Budget, checkpoints: dict[str, str], runner: StageRunner,
              out: Path) -> dict[str, Any]:
    """``{"warmup_steps", "seconds", "models": {name: {"steps", "preset_steps", "stages": {key: s/step}}}}``.

    ``models[name]["steps"]`` is the main-stage step count that fills ``budget.seconds`` for ``name``. Reads
    ``out/calibration.json`` when it was made for the same budget; raises :class:`StageFailed` when a warm-up fails.
    """
    if budget.seconds is None:
        raise ValueError("calibrate() converts a time budget; this budget is in steps")
    path = out / "calibration.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("seconds") == budget.seconds and set(stored.get("models", {})) >= set(models):
            return stored
    result: dict[str, Any] = {"warmup_steps": WARMUP_STEPS, "seconds": budget.seconds, "models": {}}
    for name in models:
        fits = [stage for stage in plan_model(name, preset, Budget(), checkpoints) if stage.command == "fit"]
        if not fits:
            continue  # nothing to train: copy-source, or a model evaluated from --ckpt
        per_step: dict[str, float] = {}
        predicted = 0.0
        for stage in fits:
            warmup = _warmup_stage(stage)
            timing = runner.directory(warmup) / "step_times.json"
            if runner.done(warmup) is None or not timing.is_file():
                runner.run(warmup, environment={STEP_TIMES_ENV: str(timing)})
            measured = json.loads(timing.read_text())
            if measured["steps"] <= 0 or measured["seconds"] <= 0:
                raise StageFailed(warmup, runner.directory(warmup) / "log.txt",
                                  f"warm-up timed no steps ({measured})")
            per_step[stage.key] = measured["seconds"] / measured["steps"]
            predicted += per_step[stage.key] * (stage.max_steps or 0)
        main = fits[-1].max_steps or 1
        result["models"][name] = {"steps": max(1, int(main * budget.seconds / predicted)), "preset_steps": main,
                                  "predicted_preset_seconds": round(predicted, 1),
                                  "seconds_per_step": {key: round(value, 4) for key, value in per_step.items()}}
    write_json(path, result)
    return result


def describe(calibration: dict[str, Any]) -> str:
    """One line per model for the report: steps and the measured cost they come from."""
    parts = []
    for name, entry in calibration["models"].items():
        rates = ", ".join(f"{key} {value:.3f} s/step" for key, value in entry["seconds_per_step"].items())
        parts.append(f"`{name}` {entry['steps']} steps ({rates})")
    return (f"{calibration['seconds'] / 60:g} min per model converted to steps from a {calibration['warmup_steps']}-"
            f"step warm-up of each stage: " + "; ".join(parts))
