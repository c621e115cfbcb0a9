"""Trainer pieces shared by every model: atomic checkpoint IO and the default Trainer configuration."""

from reenact.training.checkpoint_io import AtomicCheckpointIO, PeriodicCheckpoint
from reenact.training.defaults import follow_default_root_dir, trainer_defaults, without_progress_bar

__all__ = ["AtomicCheckpointIO", "PeriodicCheckpoint", "follow_default_root_dir", "trainer_defaults",
           "without_progress_bar"]
