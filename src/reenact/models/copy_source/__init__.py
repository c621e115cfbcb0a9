"""``copy-source``: the reference floor (the source frame for every driving frame); see its README."""

from reenact.models.copy_source.lightning_model import CopySource

__all__ = ["CopySource"]
