"""Optimisers shared by every model's Lightning module.

:func:`adam` builds ``torch.optim.Adam`` / ``AdamW`` with torch's fused implementation (``fused=True``: one
kernel updates every parameter tensor) where the parameters' device supports it. The update is the same rule; it
differs from the per-tensor loop only in floating-point rounding. At the ``tiny`` presets' sizes on CPU the loop
costs several milliseconds per step in Python and small-kernel overhead (PECHead tiny: 17 ms of a 340 ms training
iteration for its two optimisers, 6 ms fused; measured with ``benchmarks/train_throughput.py``'s setting).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


def adam(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], lr: float,
         betas: tuple[float, float] = (0.9, 0.999), weight_decay: float | None = None,
         decoupled: bool = False) -> torch.optim.Optimizer:
    """``Adam`` (``decoupled=False``) or ``AdamW`` (``decoupled=True``, Loshchilov & Hutter) over ``params``.

    ``weight_decay=None`` keeps torch's default of each (0 for Adam, 0.01 for AdamW). Fused when every
    parameter lives on a device with a fused kernel (CPU, CUDA, ...), otherwise torch's default implementation.
    """
    params = list(params)
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    options: dict[str, Any] = {"lr": lr, "betas": betas}
    if weight_decay is not None:
        options["weight_decay"] = weight_decay
    try:
        return kind(params, fused=True, **options)
    except RuntimeError:  # a device or dtype without a fused kernel
        return kind(params, **options)


__all__ = ["adam"]
