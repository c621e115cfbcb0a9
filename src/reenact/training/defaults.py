"""The Trainer configuration every model shares unless a preset or the command line overrides it."""

from __future__ import annotations

from typing import Any


def trainer_defaults(model_name: str) -> dict[str, Any]:
    """Lightning CLI ``trainer_defaults``: TensorBoard logs, checkpoints and results under
    ``runs/<model>/version_N``, CSV logs under ``runs/<model>/csv/version_N``.

    ``use_distributed_sampler`` is off because :class:`reenact.data.ReenactDataModule` shards data itself:
    evaluation must not pad shards with repeated videos, or a 2-process evaluation would count some
    videos twice and disagree with a 1-process one.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from reenact.training.checkpoint_io import AtomicCheckpointIO

    root = f"runs/{model_name}"
    return {
        "default_root_dir": root,
        "use_distributed_sampler": False,
        # The CSV logger keeps its own version folder under csv/: two loggers numbering one folder race.
        "logger": [TensorBoardLogger(save_dir=root, name=""), CSVLogger(save_dir=root, name="csv")],
        "callbacks": [RichProgressBar(), ModelCheckpoint(save_last=True)],
        "plugins": [AtomicCheckpointIO()],
        "log_every_n_steps": 10,
    }
