"""Samplers of the shared DataModule: the seeded single-process training order, the DDP training samplers
(:class:`EpochDistributedSampler`, :class:`UnpaddedDistributedSampler`) and the evaluation's even split with a
padding flag (:class:`EvenDistributedSampler`, :class:`PaddingFlagDataset`), so that every test example is
counted exactly once across processes."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

import numpy as np
from torch.utils.data import Dataset, DistributedSampler, Sampler


# --------------------------------------------------------------------------------------------- samplers
class SeededRandomSampler(Sampler):
    """Single-process training order: a permutation drawn from ``(seed, epoch)``, yielding ``(epoch, index)``.

    Lightning calls :meth:`set_epoch` at the start of every training epoch (``_set_sampler_epoch`` calls any
    sampler's ``set_epoch``), which changes both the order and, through the yielded epoch, the samples.
    """

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        order = np.random.default_rng([self.seed & 0xFFFFFFFF, self.epoch]).permutation(self.num_samples)
        epoch = self.epoch
        return iter([(epoch, int(i)) for i in order])


class EpochDistributedSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` (shuffled, padded to equal shards for training) that
    yields ``(epoch, index)`` so the per-sample randomness follows the epoch in every worker."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, int(i)) for i in super().__iter__()])


class UnpaddedDistributedSampler(DistributedSampler):
    """Evaluation sharding without padding or duplicates: rank ``r`` of ``n`` gets indices ``r, r+n, ...``.

    Every item is seen exactly once over all ranks, so metrics summed over ranks equal single-process
    metrics exactly; ranks may hold one item more or less than others (a metric that syncs at every step
    must not assume equal step counts). Subclassing ``DistributedSampler`` keeps Lightning from replacing it
    with its own padded sampler even when ``use_distributed_sampler`` is left on.
    """

    def __init__(
        self, dataset: Sized | int, num_replicas: int | None = None, rank: int | None = None
    ) -> None:
        size = dataset if isinstance(dataset, int) else len(dataset)
        super().__init__(_Length(size), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.size = size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.num_replicas))


class _Length:
    """Stand-in dataset for ``DistributedSampler.__init__``, which only needs ``len``."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size



class EvenDistributedSampler(DistributedSampler):
    """Validation sharding with equal step counts: rank ``r`` gets ``r, r+n, ...`` padded up to ``ceil(N/n)``.

    During ``fit`` Lightning routes ``validation_step`` through the DDP wrapper, whose forward is a
    collective (buffer broadcast): ranks with different numbers of validation steps would wait on each
    other forever. Padding indices are ``>= N``; :class:`PaddingFlagDataset` turns them into repeated items
    marked ``padding=True``, which the evaluation runs (keeping the collectives in step) but does not count.
    """

    def __init__(self, dataset: Sized | int, num_replicas: int | None = None, rank: int | None = None) -> None:
        size = dataset if isinstance(dataset, int) else len(dataset)
        super().__init__(_Length(size), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.size = size

    def __iter__(self) -> Iterator[int]:
        indices = list(range(self.rank, self.size, self.num_replicas))
        per_rank = -(-self.size // self.num_replicas)
        indices += [self.size + k for k in range(per_rank - len(indices))]
        return iter(indices)

    def __len__(self) -> int:
        return -(-self.size // self.num_replicas)


class PaddingFlagDataset(Dataset):
    """An evaluation dataset whose items carry ``padding``: False for real items, True for the repeats that
    :class:`EvenDistributedSampler` asks for with indices ``>= len(dataset)``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index % len(self)])
        item["padding"] = index >= len(self)
        return item


__all__ = ["EpochDistributedSampler", "EvenDistributedSampler", "PaddingFlagDataset", "SeededRandomSampler",
           "UnpaddedDistributedSampler"]
