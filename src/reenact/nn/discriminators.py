"""Patch discriminators (pix2pix, Isola et al. 2017, as adapted by FOMM, Siarohin et al. 2019,
``modules/discriminator.py``; FSRT uses the same design with keypoint heatmaps as extra input).

Layout (FOMM): ``num_blocks`` blocks of 4x4 conv -> [InstanceNorm, all but the first] -> LeakyReLU(0.2)
-> [2x2 avgpool, all but the last], channels ``min(max_features, block_expansion * 2**(i + 1))``, then a
1x1 conv to one logit per patch. Parameter names match FOMM (``down_blocks.{i}.conv``,
``down_blocks.{i}.norm``, ``conv``; multi-scale: ``discs.1``, ``discs.0-5``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import spectral_norm as _spectral_norm

from reenact.nn.blocks import AntiAliasInterpolation2d
from reenact.nn.keypoints import keypoints_to_heatmaps


class DiscriminatorBlock(nn.Module):
    """4x4 conv -> optional InstanceNorm -> LeakyReLU(0.2) -> optional 2x2 avgpool (FOMM ``DownBlock2d``)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        norm: bool = False,
        pool: bool = False,
        spectral_norm: bool = False,
        kernel_size: int = 4,
        padding: int = 0,
    ):
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=kernel_size, padding=padding)
        self.conv = _spectral_norm(conv) if spectral_norm else conv
        self.norm: nn.Module | None = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        if self.pool:
            out = F.avg_pool2d(out, 2)
        return out


class PatchDiscriminator(nn.Module):
    """Single-scale patch discriminator.

    Args:
        num_channels: image channels.
        block_expansion, num_blocks, max_features: width/depth (FOMM/FSRT: 64, 4, 512).
        spectral_norm: wrap every conv in spectral normalisation (Miyato et al. 2018).
        extra_channels: channels of an extra conditioning map concatenated to the image (``condition``).
        num_keypoints: if > 0, Gaussian heatmaps of ``keypoints`` (variance ``kp_variance``) are
            concatenated too (FSRT: 10 keypoints, variance 0.01).
        padding: padding of the 4x4 convs. FOMM uses 0, which needs inputs of at least ~64 px for 4
            blocks; 1 keeps small inputs usable.

    Forward: ``image [B, C, H, W]``, ``condition [B, extra_channels, H, W]`` (resized if needed),
    ``keypoints [B, K, 2]`` -> ``(feature_maps, prediction)`` with one ``[B, C_i, H_i, W_i]`` map per block
    and logits ``[B, 1, H', W']``.
    """

    def __init__(
        self,
        num_channels: int = 3,
        block_expansion: int = 64,
        num_blocks: int = 4,
        max_features: int = 512,
        spectral_norm: bool = False,
        extra_channels: int = 0,
        num_keypoints: int = 0,
        kp_variance: float = 0.01,
        padding: int = 0,
    ):
        super().__init__()
        self.extra_channels = extra_channels
        self.num_keypoints = num_keypoints
        self.kp_variance = kp_variance
        blocks = []
        for i in range(num_blocks):
            c_in = (
                num_channels + extra_channels + num_keypoints
                if i == 0
                else min(max_features, block_expansion * 2**i)
            )
            c_out = min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(
                DiscriminatorBlock(
                    c_in,
                    c_out,
                    norm=i != 0,
                    pool=i != num_blocks - 1,
                    spectral_norm=spectral_norm,
                    padding=padding,
                )
            )
        self.down_blocks = nn.ModuleList(blocks)
        conv = nn.Conv2d(min(max_features, block_expansion * 2**num_blocks), 1, kernel_size=1)
        self.conv = _spectral_norm(conv) if spectral_norm else conv

    def forward(
        self, image: Tensor, condition: Tensor | None = None, keypoints: Tensor | None = None
    ) -> tuple[list[Tensor], Tensor]:
        inputs = [image]
        if self.extra_channels:
            if condition is None:
                raise ValueError(f"this discriminator expects a {self.extra_channels}-channel condition map")
            if condition.shape[2:] != image.shape[2:]:
                condition = F.interpolate(
                    condition, size=image.shape[2:], mode="bilinear", align_corners=False
                )
            inputs.append(condition)
        if self.num_keypoints:
            if keypoints is None:
                raise ValueError(f"this discriminator expects {self.num_keypoints} keypoints")
            inputs.append(keypoints_to_heatmaps(keypoints, image.shape[2:], self.kp_variance).to(image.dtype))
        out = torch.cat(inputs, dim=1) if len(inputs) > 1 else image
        features = []
        for block in self.down_blocks:
            out = block(out)
            features.append(out)
        return features, self.conv(out)


def _scale_key(scale: float) -> str:
    # ModuleDict keys cannot contain '.', FOMM writes 0.5 as "0-5".
    return str(float(scale) if scale != int(scale) else int(scale)).replace(".", "-")


class MultiScaleDiscriminator(nn.Module):
    """One :class:`PatchDiscriminator` per scale, each seeing the image anti-alias downsampled to that scale.

    Args:
        scales: e.g. ``(1, 0.5)``.
        **kwargs: forwarded to every :class:`PatchDiscriminator`.

    Forward: ``image [B, C, H, W]`` (+ ``condition``, ``keypoints`` as for the patch discriminator) ->
    dict ``scale -> (feature_maps, prediction)`` in the order of ``scales``. Keypoints are scale-free
    (normalised) and are passed unchanged; condition maps are resized by each discriminator.
    """

    def __init__(self, scales: Sequence[float] = (1.0,), num_channels: int = 3, **kwargs: Any):
        super().__init__()
        self.scales = tuple(float(s) for s in scales)
        self.discs = nn.ModuleDict(
            {_scale_key(s): PatchDiscriminator(num_channels=num_channels, **kwargs) for s in self.scales}
        )
        # The blur kernels are fixed functions of the scale; non-persistent keeps them out of checkpoints.
        self.downs = nn.ModuleDict(
            {
                _scale_key(s): AntiAliasInterpolation2d(num_channels, s, persistent=False)
                for s in self.scales
                if s != 1.0
            }
        )

    def forward(
        self, image: Tensor, condition: Tensor | None = None, keypoints: Tensor | None = None
    ) -> dict[float, tuple[list[Tensor], Tensor]]:
        out: dict[float, tuple[list[Tensor], Tensor]] = {}
        for s in self.scales:
            key = _scale_key(s)
            x = self.downs[key](image) if key in self.downs else image
            out[s] = self.discs[key](x, condition, keypoints)
        return out
