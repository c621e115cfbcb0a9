"""Keypoint-warp generator: a small FOMM-style learned baseline (pure PyTorch)."""

from reenact.models.keypoint_warp.torch_model import KeypointWarpGenerator

__all__ = ["KeypointWarpGenerator"]
