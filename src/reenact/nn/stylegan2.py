"""StyleGAN2 building blocks (Karras et al., "Analyzing and Improving the Image Quality of StyleGAN", CVPR 2020),
in pure PyTorch with the module names of rosinality's stylegan2-pytorch, which LIA's official code uses (so LIA's
released checkpoint loads key for key): equalised learning rate (:class:`EqualConv2d`, :class:`EqualLinear`),
``upfirdn2d`` resampling with a binomial blur, modulated/demodulated convolution (:class:`ModulatedConv2d`,
Sec. 2.2), styled convolutions and RGB skips. Used by :mod:`reenact.models.lia.torch_model`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLUR_KERNEL = (1, 3, 3, 1)


# ------------------------------------------------------------------------------------------ low level ops
def make_kernel(kernel: Sequence[float]) -> Tensor:
    """Separable FIR kernel ``k k^T`` normalised to sum 1, ``[K, K]``."""
    k = torch.tensor(kernel, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample ``x [B, C, H, W]`` (StyleGAN2's ``upfirdn2d``,
    the native-PyTorch path of rosinality/stylegan2-pytorch that LIA ships).

    ``pad = (p0, p1)`` pads (or, when negative, crops) both spatial axes by ``p0`` before and ``p1`` after.
    The filter runs as one depthwise convolution (``groups = C``) instead of the reference's convolution of
    ``B * C`` one-channel images: the same arithmetic, about 15-30x faster on CPU (forward and backward).
    """
    batch, channels, height, width = x.shape
    p0, p1 = pad
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).expand(channels, 1, *kernel.shape)
    if up == 1 and p0 == p1 >= 0:
        # Symmetric zero padding inside the convolution: the same sums, without a padded copy of x.
        out = F.conv2d(x, weight, padding=p0, groups=channels)
        return out[:, :, ::down, ::down] if down > 1 else out
    if up > 1 and p0 >= 0 and p1 >= 0:
        # Zero insertion and padding in one zero-filled buffer (the reference pads twice).
        out = x.new_zeros(batch, channels, height * up + p0 + p1, width * up + p0 + p1)
        out[:, :, p0:p0 + height * up:up, p0:p0 + width * up:up] = x
    else:
        out = x
        if up > 1:
            out = out.view(batch, channels, height, 1, width, 1)
            out = F.pad(out, [0, up - 1, 0, 0, 0, up - 1])
            out = out.view(batch, channels, height * up, width * up)
        out = F.pad(out, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
        if p0 < 0 or p1 < 0:
            out = out[:, :, max(-p0, 0):out.shape[2] - max(-p1, 0), max(-p0, 0):out.shape[3] - max(-p1, 0)]
    out = F.conv2d(out, weight, groups=channels)
    if down > 1:
        out = out[:, :, ::down, ::down]
    return out


def fused_leaky_relu(x: Tensor, bias: Tensor, negative_slope: float = 0.2, scale: float = 2**0.5) -> Tensor:
    """``leaky_relu(x + bias) * sqrt(2)`` (StyleGAN2's gain-preserving activation)."""
    out = x + bias
    if torch.is_grad_enabled() and out.requires_grad:
        return F.leaky_relu(out, negative_slope) * scale
    # Without autograd the activation and the gain reuse the sum's buffer: the same values, two fewer
    # full-size allocations per layer (they dominate LIA's non-convolution time at 256 px).
    return F.leaky_relu_(out, negative_slope).mul_(scale)


class FusedLeakyReLU(nn.Module):
    """Bias ``[1, C, 1, 1]`` + leaky ReLU(0.2) * sqrt(2) (LIA's pure-torch ``FusedLeakyReLU``)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = 2**0.5) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class ScaledLeakyReLU(nn.Module):
    """Plain leaky ReLU (used by bias-free activated conv layers; unused at LIA's configuration)."""

    def __init__(self, negative_slope: float = 0.2) -> None:
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.negative_slope)


class Blur(nn.Module):
    """FIR low-pass filter (``kernel`` buffer ``[4, 4]``, part of the official state dict)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2  # keep the mean after zero insertion
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (``kernel`` buffer ``[4, 4]``)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * factor**2
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with the equalised learning rate: ``N(0, 1)`` weights scaled by ``1/sqrt(fan_in)`` at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    """Linear layer with the equalised learning rate; ``activation=True`` applies the fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.zeros(out_dim).fill_(bias_init)) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            out = F.linear(x, self.weight * self.scale)
            return fused_leaky_relu(out, bias) if bias is not None else F.leaky_relu(out, 0.2) * 2**0.5
        return F.linear(x, self.weight * self.scale, bias=bias)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU]; ``downsample`` blurs then convolves with stride 2.

    State-dict names follow the official ``nn.Sequential``: ``0`` (blur or conv), ``1``, ``2``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL, bias: bool = True, activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels) if bias else ScaledLeakyReLU(0.2))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """StyleGAN2 residual down block: two 3x3 convs (the second strided) + a 1x1 strided skip, / sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int, blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x: Tensor) -> Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (Karras et al. 2020, Eq. 1-3): per-sample weights
    ``w'_ijk = s_i w_ijk`` with ``s = A(style)`` (bias initialised to 1), demodulated by
    ``1/sqrt(sum w'^2 + 1e-8)`` when ``demodulate``; ``upsample`` = transposed stride-2 conv + blur.

    ``weight [1, C_out, C_in, k, k]``, ``modulation`` (EqualLinear ``style_dim -> C_in``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False,
                 blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.upsample = upsample
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.demodulate = demodulate

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        """``x [B, C_in, H, W]``, ``style [B, style_dim]`` -> ``[B, C_out, H', W']`` (``H' = 2H`` if upsampling)."""
        batch, in_channels, height, width = x.shape
        k = self.kernel_size
        s = self.modulation(style).view(batch, 1, in_channels, 1, 1)
        inplace = not (torch.is_grad_enabled() and (self.weight.requires_grad or s.requires_grad))
        weight = self.scale * self.weight
        # Without autograd the products reuse one buffer (same values, same order of operations).
        weight = weight.mul_(s) if inplace and batch == 1 else weight * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(batch, self.out_channels, 1, 1, 1)
            weight = weight.mul_(demod) if inplace else weight * demod
        # Grouped convolution: one group per sample applies each sample's own weights in one call.
        x = x.reshape(1, batch * in_channels, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channels, self.out_channels, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channels, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_channels, in_channels, k, k)
        out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channels, out.shape[2], out.shape[3])


class NoiseInjection(nn.Module):
    """``x + weight * noise``; LIA never passes noise, so this is the identity (kept for the state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        return x if noise is None else x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network, ``input [1, C, 4, 4]``."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated conv -> noise (identity in LIA) -> fused leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        return self.activate(self.noise(self.conv(x, style)))


class ToRGB(nn.Module):
    """LIA's (unmodulated) RGB head: ``ConvLayer(C, 3, 1)`` (conv + fused leaky ReLU) + bias, plus the
    upsampled RGB of the previous resolution (StyleGAN2 skip architecture)."""

    def __init__(self, in_channels: int, upsample: bool = True, blur_kernel: Sequence[float] = BLUR_KERNEL) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ConvLayer(in_channels, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out
