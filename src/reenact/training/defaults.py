"""The Trainer configuration every model shares unless a preset or the command line overrides it."""

from __future__ import annotations

import os
from typing import Any

#: Minutes of training between periodic checkpoints (default 10).
CHECKPOINT_MINUTES_ENV = "REENACT_CHECKPOINT_MINUTES"


def trainer_defaults(model_name: str) -> dict[str, Any]:
    """Lightning CLI ``trainer_defaults``: TensorBoard logs, checkpoints and results under
    ``runs/<model>/version_N``, CSV logs under ``runs/<model>/csv/version_N``. ``last.ckpt`` is written every
    ``$REENACT_CHECKPOINT_MINUTES`` (10) minutes of training and at the end.

    ``use_distributed_sampler`` is off because :class:`reenact.data.ReenactDataModule` shards data itself:
    evaluation must not pad shards with repeated videos, or a 2-process evaluation would count some
    videos twice and disagree with a 1-process one.
    """
    from reenact.training.checkpoint_io import PeriodicCheckpoint
    from reenact.training.display import ParameterSummary, StepProgressBar
    from reenact.training.timing import STEP_TIMES_ENV, StepTimer

    root = default_root(model_name)
    # A checkpoint (and last.ckpt) every few minutes of training, so that a crash or Ctrl-C loses little and
    # `--ckpt_path last.ckpt` resumes; `reenact benchmark` shortens the interval for its short stages.
    minutes = float(os.environ.get(CHECKPOINT_MINUTES_ENV, "10"))
    callbacks: list[Any] = [StepProgressBar(), ParameterSummary(), PeriodicCheckpoint(minutes=minutes)]
    if os.environ.get(STEP_TIMES_ENV):
        callbacks.append(StepTimer(os.environ[STEP_TIMES_ENV]))  # reenact benchmark's warm-up of a time budget
    # Loggers and plugins as class_path/init_args, not objects: the run's saved config.yaml must re-run it
    # (`reenact fit -c config.yaml`), and jsonargparse can serialise and re-parse only configurations.
    # The callbacks above are persistent (LightningCLI adds them at instantiation, outside the config).
    return {
        "default_root_dir": root,
        "use_distributed_sampler": False,
        # The CSV logger keeps its own version folder under csv/: two loggers numbering one folder race.
        "logger": [
            {"class_path": "lightning.pytorch.loggers.TensorBoardLogger",
             "init_args": {"save_dir": root, "name": ""}},
            {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": root, "name": "csv"}},
        ],
        "callbacks": callbacks,
        "plugins": [{"class_path": "reenact.training.checkpoint_io.AtomicCheckpointIO"}],
        "log_every_n_steps": 10,
    }


def without_progress_bar(defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` (from :func:`trainer_defaults`) without its progress-bar callback, for
    ``--trainer.enable_progress_bar false``: Lightning refuses a progress bar callback when the bar is off."""
    from lightning.pytorch.callbacks import ProgressBar

    callbacks = [c for c in defaults.get("callbacks", []) if not isinstance(c, ProgressBar)]
    return {**defaults, "callbacks": callbacks}


def default_root(model_name: str) -> str:
    """``runs/<model>``: where a run writes unless ``--trainer.default_root_dir`` says otherwise."""
    return f"runs/{model_name}"


def follow_default_root_dir(trainer_config: Any, model_name: str) -> None:
    """Point the default loggers at ``trainer.default_root_dir`` when the user moved it.

    The loggers' ``save_dir`` is a separate setting; without this, ``--trainer.default_root_dir DIR`` would move
    only Lightning's own files while logs, checkpoints and results stayed under ``runs/<model>``. A logger whose
    ``save_dir`` the user set explicitly (anything but the default root) is left alone.

    Args:
        trainer_config: the parsed ``trainer`` namespace of the Lightning CLI (modified in place).
        model_name: registry name (the default root is ``runs/<model_name>``).
    """
    root = trainer_config.get("default_root_dir")
    if root is None or str(root) == default_root(model_name):
        return
    loggers = trainer_config.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and str(init_args.get("save_dir")) == default_root(model_name):
            init_args["save_dir"] = str(root)
