"""Flow-guided modulated deformable convolution (PECHead Sec. 3.2, Eq. 3; DCNv2, Zhu et al. 2019; flow-guided
alignment as in BasicVSR++, Chan et al. 2022): the motion-aware alignment of PECHead's MMFA, a building block any
warping generator can use.

* :func:`flow_offsets`: a pixel flow as ``deform_conv2d`` offsets (every tap shifted by the flow);
* :func:`modulated_deform_conv2d`: the same function as ``torchvision.ops.deform_conv2d`` written as
  ``grid_sample`` + ``conv2d`` (vectorised on CPU);
* :class:`DeformableAlignment`: offsets ``δ = w + C^o(c(f^m, w))``, mask ``ε = σ(C^m(c(f^m, w)))``,
  ``f^d = D(f^r; δ, ε)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import deform_conv2d

from reenact.nn.warping import grid_to_flow, resize_grid


def flow_offsets(flow: Tensor, kernel_size: int, groups: int) -> Tensor:
    """Pixel flow ``[B, 2, h, w]`` (dx, dy) -> ``deform_conv2d`` offsets ``[B, 2 * groups * k * k, h, w]``.

    torchvision orders offsets as (dy, dx) pairs per kernel tap and per offset group; every tap of every group
    gets the same displacement, so the DCN's sampling grid is the plain kernel shifted by the flow.
    """
    b, _, h, w = flow.shape
    pair = torch.stack([flow[:, 1], flow[:, 0]], dim=1)  # (dy, dx)
    return pair.repeat(1, groups * kernel_size * kernel_size, 1, 1).view(b, -1, h, w)


def modulated_deform_conv2d(feature: Tensor, offset: Tensor, weight: Tensor, bias: Tensor | None, mask: Tensor,
                            padding: int) -> Tensor:
    """Modulated deformable convolution (DCNv2, Zhu et al. 2019; stride 1, dilation 1), the same function as
    ``torchvision.ops.deform_conv2d(feature, offset, weight, bias, padding=padding, mask=mask)``, written as
    bilinear sampling (``grid_sample``, zeros outside, which is torchvision's boundary rule) of every kernel tap
    followed by a 1x1 convolution over the ``C·k·k`` sampled columns.

    torchvision's CPU kernel loops over samples and columns and its backward dominates a training step at 64 px;
    this form runs the same arithmetic through ATen's vectorised ``grid_sample`` and ``conv2d``.

    ``feature [B, C, h, w]``, ``offset [B, 2 G k k, h, w]`` ((dy, dx) per tap and offset group), ``weight
    [O, C, k, k]``, ``mask [B, G k k, h, w]`` -> ``[B, O, h, w]``.
    """
    b, c, h, w = feature.shape
    out_channels, _, k, _ = weight.shape
    taps = k * k
    groups = offset.shape[1] // (2 * taps)
    off = offset.view(b, groups, taps, 2, h, w)
    tap = torch.arange(taps, device=feature.device)
    ky = (tap // k).to(offset.dtype).view(1, 1, taps, 1, 1)
    kx = (tap % k).to(offset.dtype).view(1, 1, taps, 1, 1)
    ys = torch.arange(h, device=feature.device, dtype=offset.dtype).view(1, 1, 1, h, 1)
    xs = torch.arange(w, device=feature.device, dtype=offset.dtype).view(1, 1, 1, 1, w)
    py = ys - padding + ky + off[:, :, :, 0]
    px = xs - padding + kx + off[:, :, :, 1]
    grid = torch.stack([2 * px / max(w - 1, 1) - 1, 2 * py / max(h - 1, 1) - 1], dim=-1)  # align_corners=True
    sampled = F.grid_sample(feature.reshape(b * groups, c // groups, h, w), grid.view(b * groups, taps * h, w, 2),
                            mode="bilinear", padding_mode="zeros", align_corners=True)
    sampled = sampled.view(b, groups, c // groups, taps, h, w) * mask.view(b, groups, 1, taps, h, w)
    return F.conv2d(sampled.reshape(b, c * taps, h, w), weight.reshape(out_channels, c * taps, 1, 1), bias)


class DeformableAlignment(nn.Module):
    """Eq. 3: flow-guided modulated deformable convolution.

    Args:
        channels: channels of ``f^r`` (in and out).
        motion_channels: channels of ``f^m``.
        hidden: width of the offset/mask conv blocks ``C^o``, ``C^m``.
        groups: deformable (offset) groups.
        kernel_size: DCN kernel.

    Forward: ``feature [B, C, h, w]`` (``f^r``), ``deformation [B, h', w', 2]`` (sampling grid ``w``),
    ``motion_feature [B, C_m, h'', w'']`` (``f^m``; both resized to ``h, w``) -> ``f^d [B, C, h, w]``.
    ``C^o`` ends in a zero-initialised conv, so at initialisation ``δ = w`` and the DCN samples exactly where the
    warp does (a stable start, as in BasicVSR++).
    """

    def __init__(self, channels: int, motion_channels: int, hidden: int = 64, groups: int = 8,
                 kernel_size: int = 3) -> None:
        super().__init__()
        if channels % groups:
            raise ValueError(f"channels ({channels}) must be divisible by the deformable groups ({groups})")
        self.groups = groups
        self.kernel_size = kernel_size
        #: ``"sampled"`` (:func:`modulated_deform_conv2d`, faster on CPU) or ``"torchvision"``: same function.
        self.implementation = "sampled"
        taps = groups * kernel_size * kernel_size
        self.trunk = nn.Sequential(
            nn.Conv2d(motion_channels + 2, hidden, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.LeakyReLU(0.1, inplace=True),
        )
        self.offset = nn.Conv2d(hidden, 2 * taps, 3, padding=1)  # C^o
        self.modulation = nn.Conv2d(hidden, taps, 3, padding=1)  # C^m
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def offsets_and_mask(self, deformation: Tensor, motion_feature: Tensor, size: tuple[int, int]
                         ) -> tuple[Tensor, Tensor]:
        """``δ [B, 2 G k k, h, w]`` (pixels) and ``ε [B, G k k, h, w]`` of Eq. 3."""
        flow = grid_to_flow(resize_grid(deformation, size))
        if motion_feature.shape[2:] != flow.shape[2:]:
            motion_feature = F.interpolate(motion_feature, size=size, mode="bilinear", align_corners=False)
        # The flow enters C^o/C^m in units of the feature size so the blocks see O(1) values at any resolution.
        hidden = self.trunk(torch.cat([motion_feature, flow / max(size)], dim=1))
        delta = flow_offsets(flow, self.kernel_size, self.groups) + self.offset(hidden)
        return delta, torch.sigmoid(self.modulation(hidden))

    def forward(self, feature: Tensor, deformation: Tensor, motion_feature: Tensor) -> Tensor:
        size = (feature.shape[2], feature.shape[3])
        delta, mask = self.offsets_and_mask(deformation, motion_feature, size)
        pad = self.kernel_size // 2
        if self.implementation == "torchvision":
            return deform_conv2d(feature, delta.to(feature.dtype), self.weight, self.bias, padding=pad,
                                 mask=mask.to(feature.dtype))
        return modulated_deform_conv2d(feature, delta.to(feature.dtype), self.weight, self.bias,
                                       mask.to(feature.dtype), pad)


__all__ = ["DeformableAlignment", "flow_offsets", "modulated_deform_conv2d"]
