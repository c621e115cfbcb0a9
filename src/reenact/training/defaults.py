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
    from lightning.pytorch.callbacks import RichProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from reenact.training.checkpoint_io import AtomicCheckpointIO, PeriodicCheckpoint
    from reenact.training.timing import STEP_TIMES_ENV, StepTimer

    root = f"runs/{model_name}"
    # A checkpoint (and last.ckpt) every few minutes of training, so that a crash or Ctrl-C loses little and
    # `--ckpt_path last.ckpt` resumes; `reenact benchmark` shortens the interval for its short stages.
    minutes = float(os.environ.get(CHECKPOINT_MINUTES_ENV, "10"))
    callbacks: list[Any] = [RichProgressBar(), PeriodicCheckpoint(minutes=minutes)]
    if os.environ.get(STEP_TIMES_ENV):
        callbacks.append(StepTimer(os.environ[STEP_TIMES_ENV]))  # reenact benchmark's warm-up of a time budget
    return {
        "default_root_dir": root,
        "use_distributed_sampler": False,
        # The CSV logger keeps its own version folder under csv/: two loggers numbering one folder race.
        "logger": [TensorBoardLogger(save_dir=root, name=""), CSVLogger(save_dir=root, name="csv")],
        "callbacks": callbacks,
        "plugins": [AtomicCheckpointIO()],
        "log_every_n_steps": 10,
    }
