"""FOMM's U-Net-style hourglass (Siarohin et al. 2019, ``modules/util.py``: Encoder, Decoder, Hourglass).

Parameter names match FOMM exactly (``encoder.down_blocks.{i}.conv.weight``,
``encoder.down_blocks.{i}.norm.running_mean``, ``decoder.up_blocks.{i}.conv.weight``, ...), so FOMM/FSRT
keypoint-detector and dense-motion checkpoints load by name.

Channel plan for ``block_expansion = e``, ``max_features = m``, ``num_blocks = n``, ``in_features = c``:

- encoder block ``i``: ``(c if i == 0 else min(m, e * 2**i)) -> min(m, e * 2**(i + 1))``, halves H and W;
- decoder block for level ``i`` (applied from ``i = n - 1`` down to ``0``):
  ``(1 if i == n - 1 else 2) * min(m, e * 2**(i + 1)) -> min(m, e * 2**i)``, doubles H and W, then the
  encoder skip at that resolution is concatenated;
- output channels ``out_filters = e + c`` (the last decoder block's ``e`` channels plus the input itself).

H and W must be divisible by ``2**num_blocks``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reenact.nn.blocks import DownBlock2d, NormKind, UpBlock2d


class Encoder(nn.Module):
    """Hourglass encoder: ``[B, c, H, W] -> [x, f_1, ..., f_n]`` with ``f_i`` of shape
    ``[B, *, H / 2**i, W / 2**i]``."""

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        norm: NormKind = "batch",
    ):
        super().__init__()
        blocks = []
        for i in range(num_blocks):
            c_in = in_features if i == 0 else min(max_features, block_expansion * (2**i))
            c_out = min(max_features, block_expansion * (2 ** (i + 1)))
            blocks.append(DownBlock2d(c_in, c_out, kernel_size=3, padding=1, norm=norm))
        self.down_blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    """Hourglass decoder with skip concatenation: :class:`Encoder`'s list -> ``[B, out_filters, H, W]``."""

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        norm: NormKind = "batch",
    ):
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            c_in = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * (2 ** (i + 1)))
            c_out = min(max_features, block_expansion * (2**i))
            blocks.append(UpBlock2d(c_in, c_out, kernel_size=3, padding=1, norm=norm))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features

    def forward(self, features: list[Tensor]) -> Tensor:
        # Copy so the caller's list is not consumed (FOMM pops from it in place).
        skips = list(features)
        out = skips.pop()
        for block in self.up_blocks:
            out = block(out)
            skip = skips.pop()
            out = torch.cat([out, skip], dim=1)
        return out


class Hourglass(nn.Module):
    """FOMM hourglass: ``[B, in_features, H, W] -> [B, e + in_features, H, W]`` (``e = block_expansion``)."""

    def __init__(
        self,
        block_expansion: int,
        in_features: int,
        num_blocks: int = 3,
        max_features: int = 256,
        norm: NormKind = "batch",
    ):
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features, norm=norm)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features, norm=norm)
        self.out_filters = self.decoder.out_filters
        self.num_blocks = num_blocks

    def forward(self, x: Tensor) -> Tensor:
        factor = 2**self.num_blocks
        if x.shape[-2] % factor or x.shape[-1] % factor:
            raise ValueError(
                f"Hourglass with {self.num_blocks} blocks needs H and W divisible by {factor}, "
                f"got {tuple(x.shape[-2:])}"
            )
        return self.decoder(self.encoder(x))
