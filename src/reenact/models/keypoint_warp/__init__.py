"""Keypoint-warp generator: a small FOMM-style learned baseline (pure PyTorch)."""

from reenact.models.keypoint_warp.torch_model import KeypointWarpConfig, KeypointWarpGenerator

__all__ = ["KeypointWarpConfig", "KeypointWarpGenerator"]
