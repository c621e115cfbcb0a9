"""Convolutional building blocks shared by every model.

The plain blocks (:class:`ResBlock2d`, :class:`DownBlock2d`, :class:`UpBlock2d`, :class:`SameBlock2d`,
:class:`AntiAliasInterpolation2d`) follow FOMM (Siarohin et al. 2019, "First Order Motion Model for Image
Animation", ``modules/util.py``) including their attribute names (``conv``, ``norm``, ``conv1``, ``norm1``,
``weight``), so released FOMM-family checkpoints (FOMM, FSRT's keypoint detector, TPSMM, DaGAN) load by
name. The conditioned blocks (:class:`AdaIN`, :class:`AdaINResBlock2d`) follow Huang & Belongie 2017
("Arbitrary Style Transfer in Real-time with Adaptive Instance Normalization") in the pre-activation
residual form used by BigGAN/StyleGAN-era generators. :class:`SEBlock` follows Hu et al. 2018
("Squeeze-and-Excitation Networks"); :class:`ConvGRUCell` follows Ballas et al. 2016 ("Delving Deeper into
Convolutional Networks for Learning Video Representations").

All tensors are ``[B, C, H, W]`` unless stated otherwise.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

NormKind = Literal["batch", "instance", "none"]


def make_norm(kind: NormKind, num_features: int) -> nn.Module:
    """A 2-D normalisation layer by name.

    ``"batch"`` is FOMM's default (affine BatchNorm; FOMM used a synchronised variant with the same
    parameter names), ``"instance"`` is affine InstanceNorm (no running statistics, so it behaves the same
    in train and eval mode and with batch size 1), ``"none"`` is the identity.
    """
    if kind == "batch":
        return nn.BatchNorm2d(num_features, affine=True)
    if kind == "instance":
        return nn.InstanceNorm2d(num_features, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; expected 'batch', 'instance' or 'none'")


def conv_norm_relu(x: Tensor, conv: nn.Conv2d, norm: nn.Module) -> Tensor:
    """``relu(norm(conv(x)))``, the FOMM blocks' body.

    At inference (no autograd) with BatchNorm's running statistics the normalisation is folded into the
    convolution (``torch.nn.utils.fusion.fuse_conv_bn_weights``) and the ReLU runs in place: one pass over the
    activations instead of three, equal up to float rounding (~1e-7). Training and other norms take the plain path.
    """
    if (isinstance(norm, nn.BatchNorm2d) and not norm.training and norm.running_mean is not None
            and norm.running_var is not None and not torch.is_grad_enabled() and conv.padding_mode == "zeros"):
        weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps,
                                            norm.weight, norm.bias)
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups).relu_()
    return F.relu(norm(conv(x)))


def norm_relu(x: Tensor, norm: nn.Module) -> Tensor:
    """``relu(norm(x))`` with the ReLU in place on the norm's fresh output (never on ``x`` itself)."""
    out = norm(x)
    return F.relu(out) if out is x else out.relu_()


class ResBlock2d(nn.Module):
    """FOMM residual block: ``x + conv2(relu(norm2(conv1(relu(norm1(x))))))``, channels preserved.

    Input and output ``[B, C, H, W]`` with ``C = in_features``.
    """

    def __init__(self, in_features: int, kernel_size: int = 3, padding: int = 1, norm: NormKind = "batch"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(in_features, in_features, kernel_size=kernel_size, padding=padding)
        self.norm1 = make_norm(norm, in_features)
        self.norm2 = make_norm(norm, in_features)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv1(norm_relu(x, self.norm1))
        out = self.conv2(norm_relu(out, self.norm2))
        return out + x


class DownBlock2d(nn.Module):
    """FOMM encoder block: conv -> norm -> ReLU -> 2x2 average pool.

    ``[B, in_features, H, W] -> [B, out_features, H // 2, W // 2]`` (with the default ``3x3``/padding 1).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        padding: int = 1,
        groups: int = 1,
        norm: NormKind = "batch",
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups
        )
        self.norm = make_norm(norm, out_features)
        self.pool = nn.AvgPool2d(kernel_size=(2, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(conv_norm_relu(x, self.conv, self.norm))


class SameBlock2d(nn.Module):
    """FOMM resolution-preserving block: conv -> norm -> ReLU.

    ``[B, in_features, H, W] -> [B, out_features, H, W]`` when ``padding = kernel_size // 2``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size: int = 3,
        padding: int = 1,
        groups: int = 1,
        norm: NormKind = "batch",
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_features, out_features, kernel_size=kernel_size, padding=padding, groups=groups
        )
        self.norm = make_norm(norm, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return conv_norm_relu(x, self.conv, self.norm)


class UpBlock2d(SameBlock2d):
    """FOMM decoder block: nearest x2 upsample -> conv -> norm -> ReLU (a :class:`SameBlock2d` after upsampling;
    same parameter names, so FOMM checkpoints load).

    ``[B, in_features, H, W] -> [B, out_features, 2H, 2W]`` (with the default ``3x3``/padding 1).
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AntiAliasInterpolation2d(nn.Module):
    """Gaussian blur followed by subsampling (FOMM ``AntiAliasInterpolation2d``).

    The blur has ``sigma = (1 / scale - 1) / 2`` and a ``2 * round(4 sigma) + 1`` square kernel, stored as the
    buffer ``weight`` of shape ``[channels, 1, k, k]`` (depthwise) so FOMM checkpoints load it by name
    (e.g. ``down.weight`` of shape ``[3, 1, 13, 13]`` for ``scale = 0.25``). When ``1 / scale`` is an integer
    the blurred image is subsampled by striding (FOMM's later, exact form); otherwise it is resized with
    nearest interpolation (FOMM's original form).

    ``[B, channels, H, W] -> [B, channels, ~H * scale, ~W * scale]``; ``scale = 1`` is the identity.
    ``persistent=False`` keeps the (fixed) kernel out of the state_dict, for modules that FOMM checkpoints
    do not cover, such as loss pyramids.
    """

    weight: Tensor

    def __init__(self, channels: int, scale: float, persistent: bool = True):
        super().__init__()
        if not 0.0 < scale <= 1.0:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        self.channels = channels
        self.scale = float(scale)
        sigma = (1.0 / scale - 1.0) / 2.0
        kernel_size = 2 * round(sigma * 4) + 1
        # Asymmetric padding for even kernels, as FOMM does; kernels are always odd here, kept for parity.
        self.ka = kernel_size // 2
        self.kb = self.ka - 1 if kernel_size % 2 == 0 else self.ka
        coords = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
        g = torch.exp(-(coords**2) / (2 * sigma**2)) if sigma > 0 else torch.ones_like(coords)
        kernel = g[:, None] * g[None, :]
        kernel = kernel / kernel.sum()
        kernel = kernel.view(1, 1, kernel_size, kernel_size).repeat(channels, 1, 1, 1)
        self.register_buffer("weight", kernel, persistent=persistent)
        inv = 1.0 / scale
        self.int_inv_scale = int(round(inv)) if math.isclose(inv, round(inv), rel_tol=1e-6) else 0

    def forward(self, x: Tensor) -> Tensor:
        if self.scale == 1.0:
            return x
        out = F.pad(x, (self.ka, self.kb, self.ka, self.kb))
        if self.int_inv_scale > 0:
            # Blurring every pixel and keeping every k-th (FOMM) equals a k-strided blur, which computes only the
            # kept pixels: k^2 times less work (16x for FOMM's 0.25 scale) for the same values.
            return F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.channels, stride=self.int_inv_scale)
        out = F.conv2d(out, weight=self.weight.to(out.dtype), groups=self.channels)
        return F.interpolate(out, scale_factor=(self.scale, self.scale), mode="nearest")


class AdaIN(nn.Module):
    """Adaptive instance normalisation conditioned on a vector (Huang & Belongie 2017).

    ``out = gamma(c) * instance_norm(x) + beta(c)`` with ``[gamma, beta] = affine(c)``. The gamma bias is
    initialised to 1 and the beta bias to 0 so an untrained block starts as plain instance norm.

    Args:
        num_features: channels ``C`` of ``x``.
        cond_dim: size ``D`` of the conditioning vector.

    Shapes: ``x [B, C, H, W]``, ``cond [B, D]`` -> ``[B, C, H, W]``.
    """

    def __init__(self, num_features: int, cond_dim: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.norm = nn.InstanceNorm2d(num_features, affine=False, eps=eps)
        self.affine = nn.Linear(cond_dim, 2 * num_features)
        with torch.no_grad():
            self.affine.bias[:num_features].fill_(1.0)
            self.affine.bias[num_features:].zero_()

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gamma, beta = self.affine(cond).chunk(2, dim=1)
        return self.norm(x) * gamma[:, :, None, None] + beta[:, :, None, None]


class AdaINResBlock2d(nn.Module):
    """Pre-activation residual block with AdaIN, optionally changing resolution.

    Main path: ``AdaIN -> ReLU -> [up x2] -> conv3x3 -> AdaIN -> ReLU -> conv3x3 -> [avgpool /2]``.
    Shortcut: ``[up x2] -> conv1x1 (only when channels change) -> [avgpool /2]``.

    Args:
        in_features / out_features: channels in and out.
        cond_dim: size of the conditioning vector.
        mode: ``"same"`` keeps ``H, W``; ``"down"`` halves them; ``"up"`` doubles them (nearest).

    Shapes: ``x [B, in_features, H, W]``, ``cond [B, cond_dim]`` -> ``[B, out_features, H', W']``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        cond_dim: int,
        mode: Literal["same", "down", "up"] = "same",
        kernel_size: int = 3,
    ):
        super().__init__()
        if mode not in ("same", "down", "up"):
            raise ValueError(f"mode must be 'same', 'down' or 'up', got {mode!r}")
        self.mode = mode
        padding = kernel_size // 2
        self.norm1 = AdaIN(in_features, cond_dim)
        self.conv1 = nn.Conv2d(in_features, out_features, kernel_size, padding=padding)
        self.norm2 = AdaIN(out_features, cond_dim)
        self.conv2 = nn.Conv2d(out_features, out_features, kernel_size, padding=padding)
        self.shortcut: nn.Module = (
            nn.Conv2d(in_features, out_features, 1, bias=False)
            if in_features != out_features
            else nn.Identity()
        )

    def _resample(self, x: Tensor, before_conv: bool) -> Tensor:
        # Upsampling happens before the convs (cheaper to learn detail at the new size), downsampling after.
        if self.mode == "up" and before_conv:
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        if self.mode == "down" and not before_conv:
            return F.avg_pool2d(x, 2)
        return x

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        out = self._resample(F.relu(self.norm1(x, cond)), before_conv=True)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.norm2(out, cond)))
        out = self._resample(out, before_conv=False)
        skip = self._resample(self.shortcut(self._resample(x, before_conv=True)), before_conv=False)
        return out + skip


class SEBlock(nn.Module):
    """Squeeze-and-excitation channel gating (Hu et al. 2018).

    ``x * sigmoid(fc2(relu(fc1(mean_hw(x)))))`` with hidden width ``max(1, channels // reduction)``.
    ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * gate[:, :, None, None]


class ConvGRUCell(nn.Module):
    """Convolutional GRU cell (Ballas et al. 2016) for recurrent propagation of feature maps.

    ``z, r = sigmoid(conv_gates([x, h]))``, ``n = tanh(conv_candidate([x, r * h]))``,
    ``h' = (1 - z) * h + z * n``. The update-gate bias starts negative so an untrained cell mostly keeps its
    state, which keeps early training of recurrent models stable.

    Shapes: ``x [B, input_channels, H, W]``, ``h [B, hidden_channels, H, W]`` or ``None`` (zeros)
    -> ``h' [B, hidden_channels, H, W]``.
    """

    def __init__(self, input_channels: int, hidden_channels: int, kernel_size: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        padding = kernel_size // 2
        self.conv_gates = nn.Conv2d(
            input_channels + hidden_channels, 2 * hidden_channels, kernel_size, padding=padding
        )
        self.conv_candidate = nn.Conv2d(
            input_channels + hidden_channels, hidden_channels, kernel_size, padding=padding
        )
        with torch.no_grad():
            self.conv_gates.bias[:hidden_channels].fill_(-1.0)

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        if h is None:
            h = x.new_zeros(x.shape[0], self.hidden_channels, x.shape[2], x.shape[3])
        z, r = torch.sigmoid(self.conv_gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.conv_candidate(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * n
