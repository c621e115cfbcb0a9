"""Manual optimisation under DDP without DDP's reducer, shared by the models that step several optimisers per
batch over different parameter subsets (FSRT's detector / generator / discriminator, LPMM's regressor / adaptor).

DDP's reducer expects every registered parameter to receive a gradient in every backward pass; a model whose
stages train different subsets keeps it out (:func:`backward_without_reducer`) and averages the gradients it did
compute itself (:func:`all_reduce_mean_`). Control flow is the same on every rank, so every rank averages the same
tensors in the same order. Outside DDP (one process) everything here is a plain backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

#: Elements per all-reduce: large enough to amortise the collective, small enough to bound the flat copy.
BUCKET_ELEMENTS = 1 << 24


def world_size() -> int:
    """Processes in the default group (1 outside ``torch.distributed``)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _buckets(tensors: list[Tensor], size: int) -> Iterator[list[Tensor]]:
    bucket: list[Tensor] = []
    count = 0
    for tensor in tensors:
        bucket.append(tensor)
        count += tensor.numel()
        if count >= size:
            yield bucket
            bucket, count = [], 0
    if bucket:
        yield bucket


def all_reduce_mean_(tensors: Iterable[Tensor | None], bucket_elements: int = BUCKET_ELEMENTS) -> None:
    """Average the floating-point ``tensors`` in place over processes (``None`` and integer tensors, e.g.
    BatchNorm's step counter, are skipped); bucketed flat all-reduces; a no-op in one process."""
    world = world_size()
    chosen = [t for t in tensors if t is not None and t.is_floating_point()]
    if world == 1 or not chosen:
        return
    for bucket in _buckets(chosen, bucket_elements):
        flat = torch._utils._flatten_dense_tensors(bucket)
        dist.all_reduce(flat)
        flat.div_(world)
        for tensor, synced in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket), strict=True):
            tensor.copy_(synced)


def backward_without_reducer(module: Any, loss: Tensor) -> None:
    """``module.manual_backward(loss)`` with DDP's gradient synchronisation off (Lightning's
    ``strategy.block_backward_sync``); average the gradients afterwards with :func:`all_reduce_mean_`."""
    trainer = getattr(module, "_trainer", None)
    block = getattr(getattr(trainer, "strategy", None), "block_backward_sync", None)
    with block() if block is not None else contextlib.nullcontext():
        module.manual_backward(loss)


def manual_step(module: Any, optimizer: Any, loss: Tensor) -> None:
    """One manual optimisation step of ``optimizer`` (a Lightning-wrapped or plain one): zero, backward without
    the reducer, average the gradients of its parameters over processes, step."""
    optimizer.zero_grad(set_to_none=True)
    backward_without_reducer(module, loss)
    inner = getattr(optimizer, "optimizer", optimizer)
    all_reduce_mean_(p.grad for group in inner.param_groups for p in group["params"])
    optimizer.step()
