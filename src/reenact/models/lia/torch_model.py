"""LIA, the Latent Image Animator (Wang et al., "Latent Image Animator: Learning to Animate Images via Latent
Space Navigation", ICLR 2022), in pure PyTorch, with the official code's module names (wyhsirius/LIA,
``networks/{encoder,styledecoder,discriminator}.py``) so the released Vox checkpoint loads key for key.

Pipeline (LIA Sec. 3; the backbone of LPMM, Lee et al. 2023, Sec. 4.2):

1. **Encoder** ``E`` (:class:`LIAEncoder`): a StyleGAN2 residual encoder (``enc.net_app``) maps an image to a
   ``style_dim`` code ``w`` plus the skip features at 8, 16, ..., ``size`` px. The source's code is the
   appearance latent ``w_a`` (LIA's ``w_{s->r}``).
2. **Motion** (``enc.fc``): five equalised linear layers map the code of the *driving* image to the magnitude
   vector ``alpha`` (``motion_dim`` = 20; LIA's ``A_{r->d}``, the vector LPMM's adaptor predicts).
3. **Linear Motion Decomposition** (``dec.direction``, LIA Sec. 3.2): a learned ``style_dim x motion_dim``
   matrix made orthonormal by QR, ``D = [d_1 .. d_M]``; the motion code is ``sum_i alpha_i d_i``.
   Absolute: ``z = w_a + D alpha_drv``. Relative (LIA's demo): ``z = w_a + D alpha_drv - D alpha_drv0 +
   D alpha_src``.
4. **Synthesis** (:class:`LIASynthesis`): a StyleGAN2 generator (constant 4x4 input, modulated 3x3 convs)
   styled by ``z``; at every resolution from 8 px a :class:`ToFlow` head predicts a flow field and a mask
   (accumulated coarse-to-fine like StyleGAN2's RGB skips) that warp the matching encoder feature into the
   decoder: ``out = warp(feat) * m + out * (1 - m)``; the warped features are rendered by :class:`ToRGB`.

Images are in ``[-1, 1]`` here, as in the official code; :class:`reenact.models.lia.lightning_model.LIA` converts.

Faithful details of the official code that look odd but matter for its checkpoint:

* ``dec.to_rgb1`` exists in the state dict but is never used by the forward pass, and the noise-injection
  weights are never used either (LIA calls its styled convs without noise). They are kept for the layout
  and frozen (``requires_grad=False``) so DDP without ``find_unused_parameters`` accepts the model.
* ``enc.fc`` has no non-linearity between its layers; ``grid_sample`` uses ``align_corners=False`` with an
  identity grid from ``linspace(-1, 1, n)`` (the official combination).

The StyleGAN2 layers (equalised learning rate, ``upfirdn2d``, modulated convolution) are shared building blocks
in :mod:`reenact.nn.stylegan2`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reenact.nn.config import ArchitectureConfig
from reenact.nn.stylegan2 import (
    BLUR_KERNEL,
    ConstantInput,
    ConvLayer,
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    NoiseInjection,
    ResBlock,
    StyledConv,
    ToRGB,
    Upsample,
)


def identity_grid(size: int, batch: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[B, size, size, 2]`` sampling grid ``(x, y)`` from ``linspace(-1, 1, size)`` (the official grid: NumPy's
    float64 ``linspace`` cast to float32, which rounds differently from a float32 ``linspace``)."""
    # NumPy's linspace, not torch's: their float64 values differ in the last bit at some sizes.
    xs = torch.from_numpy(np.linspace(-1.0, 1.0, size)).to(device=device, dtype=dtype)
    grid = torch.stack(torch.meshgrid(xs, xs, indexing="xy"), dim=-1)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1)


class ToFlow(nn.Module):
    """Flow + mask head (LIA Sec. 3.3): a modulated 1x1 conv (no demodulation) to 3 channels, plus the
    upsampled logits of the coarser level; ``tanh`` of the first two is a sampling offset added to the
    identity grid, ``sigmoid`` of the third the mask ``m``.

    ``forward(x [B, C, h, h], style, feat [B, C, h, h], skip)`` -> ``(warped = warp(feat) * m,
    blended = warped + x * (1 - m), logits [B, 3, h, h])``.
    """

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, feat: Tensor,
                skip: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        sampler = torch.tanh(out[:, 0:2]).permute(0, 2, 3, 1)
        mask = torch.sigmoid(out[:, 2:3])
        grid = sampler + identity_grid(x.shape[2], x.shape[0], x.device, x.dtype)
        if feat.shape[0] != grid.shape[0]:
            feat = feat.expand(grid.shape[0], -1, -1, -1)  # one identity shared by a batch of poses
        warped = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * mask
        return warped, warped + x * (1 - mask), out


class Direction(nn.Module):
    """Linear Motion Decomposition (LIA Sec. 3.2): ``weight [style_dim, motion_dim]``; its QR factor ``Q`` holds
    the orthonormal directions ``d_i`` (columns). ``forward(alpha [B, M]) = sum_i alpha_i d_i``, summed as the
    official code does (``sum(diag(alpha) Q^T, dim=1)``: the same value as ``alpha Q^T`` up to float rounding,
    bit-identical to the release)."""

    def __init__(self, style_dim: int, motion_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(style_dim, motion_dim))

    def basis(self) -> Tensor:
        """The orthonormal directions ``Q [style_dim, motion_dim]``."""
        # The official +1e-8 keeps QR away from an exactly zero column; QR in float32 for determinism.
        q, _ = torch.linalg.qr((self.weight + 1e-8).float())
        return q.to(self.weight.dtype)

    def forward(self, alpha: Tensor | None) -> Tensor:
        q = self.basis()
        if alpha is None:
            return q
        return torch.sum(torch.diag_embed(alpha) @ q.T.to(alpha.dtype), dim=1)


# --------------------------------------------------------------------------------------------- networks
def channel_map(size: int, channel_base: int, channel_max: int) -> dict[int, int]:
    """Channels per resolution ``min(channel_max, channel_base // res)`` for ``res = 4 .. size``.

    ``channel_base=16384, channel_max=512`` is StyleGAN2's/LIA's map: 512 up to 32 px, 256, 128, 64 at 64,
    128, 256 px.
    """
    return {2**i: max(1, min(channel_max, channel_base // 2**i)) for i in range(2, int(math.log2(size)) + 1)}


def _check_size(size: int) -> int:
    log_size = int(round(math.log2(size)))
    if 2**log_size != size or size < 8:
        raise ValueError(f"LIA needs a power-of-two image size >= 8, got {size}")
    return log_size


class EncoderApp(nn.Module):
    """StyleGAN2 residual encoder (``enc.net_app``): ``convs.0`` 1x1 ConvLayer, ``convs.1..n`` ResBlocks
    halving the resolution down to 4 px, ``convs.{n+1}`` a 4x4 EqualConv2d to ``style_dim`` (no bias).

    ``forward(x [B, 3, S, S])`` -> ``(w [B, style_dim], feats)`` with ``feats`` the activations at 8, 16, ...,
    S px (coarse to fine), the skip features the decoder warps.
    """

    def __init__(self, size: int, style_dim: int, channels: dict[int, int],
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        log_size = _check_size(size)
        self.convs = nn.ModuleList([ConvLayer(3, channels[size], 1)])
        in_channels = channels[size]
        for i in range(log_size, 2, -1):
            out_channels = channels[2 ** (i - 1)]
            self.convs.append(ResBlock(in_channels, out_channels, blur_kernel))
            in_channels = out_channels
        self.convs.append(EqualConv2d(in_channels, style_dim, 4, padding=0, bias=False))

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        outputs = []
        h = x
        for conv in self.convs:
            h = conv(h)
            outputs.append(h)
        # outputs: S, S/2, ..., 4 px, then the 1x1 code; reversed minus (code, 4 px) = 8 px .. S px.
        return outputs[-1].flatten(1), outputs[::-1][2:]


class LIAEncoder(nn.Module):
    """``net_app`` (appearance encoder) + ``fc`` (motion MLP: 4 x EqualLinear(D, D) + EqualLinear(D, M), no
    activations, as in the official code)."""

    def __init__(self, size: int, style_dim: int, motion_dim: int, channels: dict[int, int],
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.net_app = EncoderApp(size, style_dim, channels, blur_kernel)
        layers = [EqualLinear(style_dim, style_dim) for _ in range(4)]
        layers.append(EqualLinear(style_dim, motion_dim))
        self.fc = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        return self.net_app(x)

    def motion(self, code: Tensor) -> Tensor:
        """Magnitudes ``alpha [B, M]`` from an encoder code ``[B, D]``."""
        return self.fc(code)


class LIASynthesis(nn.Module):
    """StyleGAN2 synthesis with flow-warped encoder features (``dec``); see the module docstring."""

    def __init__(self, size: int, style_dim: int, motion_dim: int, channels: dict[int, int],
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        log_size = _check_size(size)
        self.direction = Direction(style_dim, motion_dim)
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(channels[4], upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_channels = channels[4]
        for i in range(3, log_size + 1):
            out_channels = channels[2**i]
            self.convs.append(StyledConv(in_channels, out_channels, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channels, out_channels, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channels, blur_kernel=blur_kernel))
            self.to_flows.append(ToFlow(out_channels, style_dim, blur_kernel=blur_kernel))
            in_channels = out_channels
        # Kept only for the official layout: never used by the forward pass (see the module docstring).
        self.to_rgb1.requires_grad_(False)
        for module in self.modules():
            if isinstance(module, NoiseInjection):
                module.requires_grad_(False)

    def forward(self, latent: Tensor, feats: Sequence[Tensor]) -> Tensor:
        """``latent [B, style_dim]`` (``w_a + D alpha``), ``feats`` from :class:`EncoderApp` (batch 1 or B)
        -> image ``[B, 3, S, S]`` in about ``[-1, 1]``."""
        out = self.conv1(self.input(latent.shape[0]), latent)
        skip = skip_flow = None
        for index, (to_rgb, to_flow, feat) in enumerate(zip(self.to_rgbs, self.to_flows, feats, strict=True)):
            out = self.convs[2 * index](out, latent)
            out = self.convs[2 * index + 1](out, latent)
            warped, out, skip_flow = to_flow(out, latent, feat, skip_flow)
            skip = to_rgb(warped, skip)
        assert skip is not None
        return skip


@dataclass(frozen=True)
class LIAConfig(ArchitectureConfig):
    """Architecture of :class:`LIAGenerator` besides its image size (the fields are described there), declared
    once: the Lightning module takes it as ``generator`` (``model.generator.*``); defaults: the official sizes."""

    style_dim: int = 512
    motion_dim: int = 20
    channel_base: int = 16384
    channel_max: int = 512


class LIAGenerator(nn.Module):
    """The LIA generator: ``enc`` (:class:`LIAEncoder`) + ``dec`` (:class:`LIASynthesis`).

    Args:
        size: image side (power of two; official 256).
        config: the rest of the architecture (:class:`LIAConfig`), with keyword ``overrides`` of its fields on top:
        style_dim: latent size ``D`` (official 512).
        motion_dim: number of motion directions ``M`` (official 20).
        channel_base, channel_max: channels per resolution, see :func:`channel_map` (official 16384, 512).

    The official 256 px configuration has 45,116,317 parameters (encoder 22,696,532, decoder 22,419,785)
    and exactly the state-dict keys and shapes of wyhsirius/LIA's ``Generator``.

    Images are ``[B, 3, S, S]`` in ``[-1, 1]``.
    """

    def __init__(self, size: int = 256, config: LIAConfig | Mapping[str, Any] | None = None,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, **overrides: Any) -> None:
        super().__init__()
        c = self.config = LIAConfig.resolve(config, **overrides)
        self.size = size
        self.style_dim = c.style_dim
        self.motion_dim = c.motion_dim
        channels = channel_map(size, c.channel_base, c.channel_max)
        self.enc = LIAEncoder(size, c.style_dim, c.motion_dim, channels, blur_kernel)
        self.dec = LIASynthesis(size, c.style_dim, c.motion_dim, channels, blur_kernel)

    # ---------------------------------------------------------------------------------------- pieces
    def encode(self, image: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Appearance code ``w_a [B, D]`` and skip features of ``image [B, 3, S, S]``."""
        return self.enc(image)

    def motion(self, image: Tensor) -> Tensor:
        """Motion magnitudes ``alpha [B, M]`` of ``image`` (LIA's ``enc_motion``)."""
        return self.enc.motion(self.enc(image)[0])

    def directions(self, alpha: Tensor) -> Tensor:
        """``sum_i alpha_i d_i [B, D]`` for ``alpha [B, M]``."""
        return self.dec.direction(alpha)

    def synthesize(self, w_a: Tensor, feats: Sequence[Tensor], alpha: Tensor | None = None,
                   alpha_start: Tensor | None = None, alpha_source: Tensor | None = None) -> Tensor:
        """Render ``z = w_a + D alpha`` (absolute) or ``w_a + (D alpha - D alpha_start) + D alpha_source``
        (relative, when both extra magnitudes are given, in the official code's order of operations);
        ``alpha=None`` renders ``w_a`` itself."""
        latent = w_a
        if alpha is not None:
            if alpha_start is not None and alpha_source is not None:
                motion = self.directions(alpha) - self.directions(alpha_start)
                latent = latent + motion + self.directions(alpha_source)
            elif (alpha_start is None) != (alpha_source is None):
                raise ValueError("relative motion needs both alpha_start and alpha_source")
            else:
                latent = latent + self.directions(alpha)
        return self.dec(latent, feats)

    def forward(self, source: Tensor, driving: Tensor | None, driving_start: Tensor | None = None) -> Tensor:
        """The official ``Generator.forward``: reconstruct ``driving``'s motion on ``source``.

        Args:
            source: ``[B, 3, S, S]`` in ``[-1, 1]``.
            driving: ``[B, 3, S, S]`` or ``None`` (render the source code alone).
            driving_start: ``[B, 3, S, S]`` first driving frame for relative motion, or ``None`` (absolute).
        """
        if driving is None:
            w_a, feats = self.encode(source)
            return self.synthesize(w_a, feats)
        batch = source.shape[0]
        # One encoder pass over source and driving: the encoder has no batch statistics, so this is exact.
        codes, feats = self.enc(torch.cat([source, driving], 0))
        w_a, feats = codes[:batch], [f[:batch] for f in feats]
        alpha = self.enc.motion(codes[batch:])
        if driving_start is None:
            return self.synthesize(w_a, feats, alpha)
        alpha_start = self.motion(driving_start)
        return self.synthesize(w_a, feats, alpha, alpha_start, self.enc.motion(w_a))


@torch.no_grad()
def init_source_reconstruction(generator: LIAGenerator, mask_logit: float = 3.0) -> None:
    """Initialise ``generator`` so that, untrained, it renders its source (CPU-scale recipe; not the paper's).

    LIA (Sec. 3.3) renders the driving frame from encoder features warped by flows; with random weights that
    is a random image, and at a few hundred steps the generator spends its budget learning to reproduce its
    input. Here the finest level carries the image through unchanged from the start:

    * the first three channels of the encoder's first layer (``enc.net_app.convs.0``, 1x1 conv + fused leaky
      ReLU) copy ``x + 1`` (``x`` the ``[-1, 1]`` image, so the activation is in its linear part); the other
      channels keep their random initialisation;
    * every :class:`ToFlow` head starts with zero weights (identity warp, ``tanh(flow) = 0``) and the finest
      mask at ``sigmoid(mask_logit)``;
    * the finest :class:`ToRGB` maps those three channels back to ``x``; the coarser RGB heads start at zero.

    Every weight stays trainable and every module is kept: this only picks a starting point from which the
    generator's output is the (identity-warped) source, and training moves the flows. Images must be in
    ``[-1, 1]`` (the generator's range).
    """
    first_conv, first_act = generator.enc.net_app.convs[0][0], generator.enc.net_app.convs[0][1]
    if first_conv.weight.shape[0] < 3:
        raise ValueError("init_source_reconstruction needs >= 3 channels at the finest resolution")
    first_conv.weight[:3].zero_()
    for c in range(3):
        first_conv.weight[c, c] = 1.0 / first_conv.scale  # effective weight 1
    first_act.bias[:, :3] = 1.0
    for to_flow in generator.dec.to_flows:
        to_flow.conv.weight.zero_()
        to_flow.bias.zero_()
    generator.dec.to_flows[-1].bias[:, 2] = mask_logit
    mask = torch.sigmoid(torch.tensor(mask_logit)).item()
    for to_rgb in generator.dec.to_rgbs:
        to_rgb.conv[0].weight.zero_()
        to_rgb.conv[1].bias.zero_()
        to_rgb.bias.zero_()
    # Finest level: warped = mask * sqrt(2) * (x + 1) in channels 0..2; conv -> (x + 1) / sqrt(2); the fused
    # leaky ReLU (linear for positive input) -> x + 1; the RGB bias -> x.
    last = generator.dec.to_rgbs[-1]
    for c in range(3):
        last.conv[0].weight[c, c] = 1.0 / (2.0 * mask) / last.conv[0].scale
    last.bias.fill_(-1.0)


# ------------------------------------------------------------------------------------------ discriminator
class StyleGAN2Discriminator(nn.Module):
    """StyleGAN2 residual discriminator (Karras et al. 2020; LIA's ``networks/discriminator.py``, after
    rosinality/stylegan2-pytorch): ``convs`` (1x1 ConvLayer + ResBlocks down to 4 px), minibatch standard
    deviation (group ``stddev_group``, 1 feature), ``final_conv`` 3x3 and ``final_linear`` (EqualLinear +
    fused leaky ReLU, EqualLinear to 1 logit). Names match the official ``dis`` state dict at the same sizes.

    ``forward(image [B, 3, S, S] in [-1, 1])`` -> logits ``[B, 1]``.
    """

    def __init__(self, size: int = 256, channel_base: int = 16384, channel_max: int = 512, stddev_group: int = 4,
                 stddev_feat: int = 1, blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        log_size = _check_size(size)
        channels = channel_map(size, channel_base, channel_max)
        convs: list[nn.Module] = [ConvLayer(3, channels[size], 1)]
        in_channels = channels[size]
        for i in range(log_size, 2, -1):
            out_channels = channels[2 ** (i - 1)]
            convs.append(ResBlock(in_channels, out_channels, blur_kernel))
            in_channels = out_channels
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.stddev_feat = stddev_feat
        self.final_conv = ConvLayer(in_channels + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation=True),
            EqualLinear(channels[4], 1),
        )

    def forward(self, image: Tensor) -> Tensor:
        out = self.convs(image)
        batch, channels, height, width = out.shape
        # The largest group size <= stddev_group dividing the batch (StyleGAN2 needs divisibility).
        group = next(g for g in range(min(batch, self.stddev_group), 0, -1) if batch % g == 0)
        stddev = out.view(group, -1, self.stddev_feat, channels // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
        stddev = stddev.repeat(group, 1, height, width)
        out = self.final_conv(torch.cat([out, stddev], 1))
        return self.final_linear(out.flatten(1))
