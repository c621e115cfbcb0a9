"""Multiply-accumulate counts of a forward pass, including the ops PyTorch's counter does not know.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and convolutions but treats custom operators such as
``torchvision::deform_conv2d`` as free, so PECHead's deformable alignment (MMFA, Eq. 3) would count as zero MACs
when it runs through torchvision. :func:`count_macs` adds its formula: a modulated deformable convolution does the
work of the ordinary convolution of the same shape (``out elements x C_in / groups x k_h x k_w`` MACs); the
bilinear sampling of its taps is not counted, as interpolation is not counted for ``grid_sample`` either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode


def _deform_conv2d_flops(input: Any, weight: Any, offset: Any, mask: Any, bias: Any, *args: Any,
                         out_shape: Any = None, **kwargs: Any) -> int:
    """FLOPs (2 per MAC) of ``torchvision::deform_conv2d``: ``weight [O, C / groups, kh, kw]``, output
    ``[B, O, H, W]`` -> ``2 * B * O * H * W * (C / groups) * kh * kw``."""
    out_channels, in_per_group, kernel_h, kernel_w = weight
    batch, _, height, width = out_shape
    return 2 * batch * out_channels * height * width * in_per_group * kernel_h * kernel_w


def _custom_mapping() -> dict[Any, Callable[..., int]]:
    """Extra formulas keyed by operator packet (FlopCounterMode looks ops up by packet and passes shapes)."""
    try:
        import torchvision  # noqa: F401  (registers torch.ops.torchvision)

        operator = torch.ops.torchvision.deform_conv2d
    except (ImportError, AttributeError, RuntimeError):
        return {}
    return {operator: _deform_conv2d_flops}


def count_macs(function: Callable[[], Any]) -> float:
    """MACs (FLOPs / 2) of calling ``function()`` once, deformable convolutions included."""
    with FlopCounterMode(display=False, custom_mapping=_custom_mapping()) as counter:
        function()
    return counter.get_total_flops() / 2


__all__ = ["count_macs"]
