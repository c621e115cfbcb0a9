"""Sinusoidal positional encoding as used by SRT/FSRT (Sajjadi et al. 2022; Rochow et al. 2024, "FSRT").

For an input ``[..., D]`` and octaves ``o = start_octave, ..., start_octave + num_octaves - 1`` the output
is ``[..., 2 * D * num_octaves]`` laid out as

    [ sin(2^o_0 pi c_0), ..., sin(2^o_{n-1} pi c_0),  sin(2^o_0 pi c_1), ...,  sin(... c_{D-1}),
      cos(2^o_0 pi c_0), ..., cos(2^o_{n-1} pi c_0),  cos(2^o_0 pi c_1), ...,  cos(... c_{D-1}) ]

i.e. all sines then all cosines, each block coordinate-major and octave-minor: ``out[..., d * n + i] =
sin(2^(start + i) pi c_d)`` and ``out[..., D * n + d * n + i] = cos(...)``. This is the official SRT/FSRT
ordering, so weights that consume the encoding load unchanged.

FSRT: pixels (x, y) with 16 octaves from -1 -> 64 dims; keypoints with 4 octaves from -1 per coordinate,
applied to the flattened ``[B, 2K]`` keypoint vector (x_0, y_0, x_1, ...) -> 160 dims for K = 10.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PositionalEncoding(nn.Module):
    """``[..., D] -> [..., 2 * D * num_octaves]`` sin/cos features at ``2^o * pi`` (ordering: module doc)."""

    def __init__(self, num_octaves: int = 8, start_octave: int = 0):
        super().__init__()
        self.num_octaves = num_octaves
        self.start_octave = start_octave

    def output_dim(self, input_dim: int) -> int:
        """Output width for ``input_dim`` coordinates."""
        return 2 * input_dim * self.num_octaves

    def forward(self, coords: Tensor) -> Tensor:
        octaves = torch.arange(self.start_octave, self.start_octave + self.num_octaves, device=coords.device)
        # At least float32: at 2^14 pi a half/bfloat16 argument would lose the phase entirely.
        work = torch.float64 if coords.dtype == torch.float64 else torch.float32
        multipliers = torch.pow(2.0, octaves.to(work)) * math.pi  # [n]
        scaled = coords.to(work).unsqueeze(-1) * multipliers  # [..., D, n]
        flat = scaled.flatten(-2)  # coordinate-major, octave-minor
        return torch.cat([torch.sin(flat), torch.cos(flat)], dim=-1).to(coords.dtype)

    def extra_repr(self) -> str:
        return f"num_octaves={self.num_octaves}, start_octave={self.start_octave}"
