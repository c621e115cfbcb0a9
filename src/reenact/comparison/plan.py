"""What ``reenact benchmark`` runs: the training budget and the stages of each model.

Every model is trained and evaluated through the ``reenact fit``/``reenact test`` commands themselves (one
subprocess per stage), so the comparison uses exactly the code path a user runs, DDP included: the shared
Trainer options (``--trainer.devices``, ``--trainer.strategy``, seed, data) are the same for every stage.

Models with a prerequisite stage get it first, inside their own budget:

* ``pechead``: the Face Shape Reconstructor ``R`` (``--model.stage reconstructor``, supplement 2.3: "R is
  separately trained"), then the generator stage with ``--model.reconstructor_ckpt``;
* ``lpmm``: its own LIA backbone (stage ``lpmm.backbone``: ``reenact fit --model lia``), then LPMM with
  ``--model.backbone_ckpt``. The backbone is trained inside LPMM's budget even when ``lia`` is benchmarked too,
  so that every model gets the same budget; ``--ckpt lia=PATH`` gives a trained backbone instead.

A model may be listed as ``NAME:VARIANT`` (``pechead:kp``): that model trained and tested with
``--model.variant VARIANT`` (the values of its class's ``variants``, e.g. PECHead's Table 4 settings) and
reported under ``NAME:VARIANT``. Variants of one model share its prerequisite stages (PECHead's ``R`` is the
same for every Table 4 setting, so it is trained once).

Budget (``--budget``): always steps, so that a benchmark reproduces on any machine. ``STEPS`` (``300`` or
``300steps``) replaces the preset's ``trainer.max_steps`` of the model's main stage and scales its prerequisite
stages and its step-counted schedules (:data:`STEP_HPARAMS`) by the same factor; ``4x`` gives every model four
times its preset's steps; the default is each preset's own ``max_steps``. A time (``2.5min``, ``90s``) is
converted to steps once, before training, from a short measured warm-up of every stage
(:mod:`reenact.comparison.calibrate`): each model gets the steps that fill that time on this machine, and the
conversion is written in the report. ``max_steps`` counts optimiser steps, as Lightning does: models with a
generator and a discriminator make two per batch (their presets say so).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from reenact.registry import get_entry, list_models, preset_config

#: Steps of a prerequisite stage as a fraction of its model's main-stage steps (``STEPS`` budgets and presets).
PREREQUISITE_STEPS: dict[str, float] = {"pechead.reconstructor": 0.5}
#: Model hyper-parameters counted in training steps: a ``STEPS`` budget scales them with ``max_steps`` so that
#: every phase of the schedule still happens (FSRT's keypoint pretraining and three phases, LPMM's regressor and
#: adaptor stages, LIA's GAN warm-up, also when LIA trains as LPMM's backbone). PECHead's OneCycle follows
#: ``max_steps`` by itself.
STEP_HPARAMS: dict[str, tuple[str, ...]] = {
    "lia": ("gan_start_steps", "gan_ramp_steps"),
    "fsrt": ("kp_pretrain_steps", "lr_warmup_steps", "lr_decay_steps", "phase2_start", "phase3_start",
             "disc_warmup_steps"),
    "lpmm": ("regressor_steps", "adaptor_steps"),
}


@dataclass(frozen=True)
class Budget:
    """``steps`` (optimiser steps of each model's main stage), ``factor`` (times each preset's own steps) or
    ``seconds`` (training time per model, converted to steps by a warm-up); none: the presets' own ``max_steps``."""

    steps: int | None = None
    seconds: float | None = None
    factor: float | None = None

    @classmethod
    def parse(cls, text: str | None) -> Budget:
        if text is None or text in ("", "preset"):
            return cls()
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(steps?|s|sec|min|m|h|x)?\s*", text.lower())
        if not match:
            raise ValueError(f"--budget {text!r}: expected STEPS (e.g. 300 or 300steps), a multiple of the presets' "
                             "steps (e.g. 4x) or a time (e.g. 2.5min, 90s, 1h)")
        value, unit = float(match.group(1)), match.group(2) or "steps"
        if value <= 0:
            raise ValueError(f"--budget {text!r} must be positive")
        if unit == "x":
            return cls(factor=value)
        if unit.startswith("step"):
            if value != int(value):
                raise ValueError(f"--budget {text!r}: a step budget is a whole number")
            return cls(steps=int(value))
        factor = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}[unit]
        return cls(seconds=value * factor)

    def describe(self) -> str:
        if self.steps is not None:
            return f"{self.steps} optimiser steps per model (main stage; prerequisite stages scaled alike)"
        if self.factor is not None:
            return (f"{self.factor:g} x each preset's own trainer.max_steps (steps; prerequisite stages and "
                    "step-counted schedules scaled alike)")
        if self.seconds is not None:
            return (f"{self.seconds / 60:g} min of training per model, converted to steps from a measured warm-up "
                    "(see the calibration)")
        return "each preset's own trainer.max_steps (steps; prerequisite stages at their preset share)"

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.seconds, "factor": self.factor,
                "description": self.describe()}


@dataclass
class Stage:
    """One ``reenact fit`` or ``reenact test`` subprocess.

    ``checkpoint_args`` maps a CLI option (``--model.backbone_ckpt``) to the key of the stage whose final
    checkpoint it receives.
    """

    key: str
    model: str
    command: str
    owner: str
    args: list[str] = field(default_factory=list)
    checkpoint_args: dict[str, str] = field(default_factory=dict)
    max_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "model": self.model, "command": self.command, "owner": self.owner,
                "args": self.args, "checkpoint_args": self.checkpoint_args, "max_steps": self.max_steps}


def split_variant(name: str) -> tuple[str, str | None]:
    """``"pechead:kp"`` -> ``("pechead", "kp")``; ``"fsrt"`` -> ``("fsrt", None)``."""
    model, _, variant = name.partition(":")
    return model, (variant or None) if ":" in name else None


def check_model_names(models: list[str]) -> None:
    """Raise ``ValueError`` naming the entry for an unknown model, an unknown variant or a repeated entry."""
    known = list_models()
    for name in models:
        model, variant = split_variant(name)
        if model not in known:
            raise ValueError(f"unknown model {model!r}; registered: {', '.join(known)}")
        if ":" in name:
            variants = get_entry(model).load_class().variants
            if not variants:
                raise ValueError(f"{name!r}: model {model!r} has no variants")
            if variant not in variants:
                raise ValueError(f"{name!r}: unknown variant {variant!r} of {model!r}; "
                                 f"expected one of {', '.join(variants)}")
    if len(set(models)) != len(models):
        raise ValueError(f"a model is listed twice: {', '.join(models)}")


def _preset_steps(name: str, preset: str) -> int:
    steps = (preset_config(name, preset).get("trainer") or {}).get("max_steps")
    if not steps or steps < 0:
        raise ValueError(f"conf/{name}/{preset}.yaml sets no trainer.max_steps; give --budget STEPS")
    return int(steps)


def _fit(key: str, model: str, owner: str, main_steps: int, scale: float, args: list[str] | None = None,
         checkpoint_args: dict[str, str] | None = None) -> Stage:
    return Stage(key=key, model=model, command="fit", owner=owner, args=list(args or []),
                 checkpoint_args=dict(checkpoint_args or {}), max_steps=max(1, round(main_steps * scale)))


def _scaled_hparams(name: str, preset: str, scale: float) -> list[str]:
    """``--model.X N`` for the step-counted hyper-parameters of :data:`STEP_HPARAMS`, scaled with the budget."""
    if scale == 1.0:
        return []
    config = preset_config(name, preset).get("model") or {}
    args: list[str] = []
    for option in STEP_HPARAMS.get(name, ()):
        if option in config:
            # 0 stays 0 (a switched-off phase stays off); anything else keeps at least one step.
            value = config[option]
            args += [f"--model.{option}", str(0 if value == 0 else max(1, round(value * scale)))]
    return args


def plan_model(name: str, preset: str, budget: Budget, checkpoints: dict[str, str],
               steps: int | None = None) -> list[Stage]:
    """The stages that train (unless ``checkpoints`` has the model) and test ``name``.

    ``steps``: this model's main-stage steps (from a time budget's calibration); default: ``budget.steps`` or the
    preset's ``max_steps``. A time budget without ``steps`` plans the preset's lengths (the calibration's warm-up
    runs a few steps of each of these stages).
    """
    base, variant = split_variant(name)
    model_class = get_entry(base).load_class()
    variant_args = ["--model.variant", variant] if variant else []
    test_args: list[str] = []
    stages: list[Stage] = []
    if name in checkpoints:
        test_args = ["--ckpt_path", checkpoints[name]]
    elif model_class.trainable:
        preset_steps = _preset_steps(base, preset)
        if steps is not None:
            main_steps = steps
        elif budget.steps is not None:
            main_steps = budget.steps
        elif budget.factor is not None:
            main_steps = max(1, round(preset_steps * budget.factor))
        else:
            main_steps = preset_steps
        scale = main_steps / preset_steps
        if base == "pechead":
            reconstructor_steps = max(1, round(preset_steps * PREREQUISITE_STEPS["pechead.reconstructor"]))
            stages.append(_fit("pechead.reconstructor", "pechead", name, reconstructor_steps, scale,
                               ["--model.stage", "reconstructor"]))
            stages.append(_fit(name, "pechead", name, preset_steps, scale, variant_args,
                               checkpoint_args={"--model.reconstructor_ckpt": "pechead.reconstructor"}))
        elif base == "lpmm":
            if "lia" not in checkpoints:
                stages.append(_fit("lpmm.backbone", "lia", name, _preset_steps("lia", preset), scale,
                                   _scaled_hparams("lia", preset, scale)))
            stages.append(_fit("lpmm", "lpmm", name, preset_steps, scale, _scaled_hparams(name, preset, scale),
                               checkpoint_args={"--model.backbone_ckpt": "lpmm.backbone"}))
            if "lia" in checkpoints:
                stages[-1].checkpoint_args = {}
                stages[-1].args += ["--model.backbone_ckpt", checkpoints["lia"]]
        else:
            stages.append(_fit(name, base, name, preset_steps, scale,
                               [*_scaled_hparams(base, preset, scale), *variant_args]))
        test_args = []
    stages.append(Stage(key=f"{name}.test", model=base, command="test", owner=name, args=[*test_args, *variant_args],
                        checkpoint_args={} if test_args or not model_class.trainable else {"--ckpt_path": name}))
    return stages


def plan(models: list[str], preset: str, budget: Budget, checkpoints: dict[str, str],
         steps: dict[str, int] | None = None) -> list[Stage]:
    """All stages in run order, model after model (each stage belongs to the model in ``Stage.owner``);
    ``steps`` gives models their own main-stage steps (a time budget's calibration)."""
    check_model_names(models)
    check_model_names(list(checkpoints))
    stages: list[Stage] = []
    for name in models:
        for stage in plan_model(name, preset, budget, checkpoints, (steps or {}).get(name)):
            # Variants of one model share its prerequisite stage (the first variant owns it).
            if not any(stage.key == planned.key for planned in stages):
                stages.append(stage)
    return stages
