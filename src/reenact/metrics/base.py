"""The metric contract shared by every evaluation protocol.

Every metric is a torchmetrics :class:`~torchmetrics.Metric`, so its state is reduced across DDP
processes by torchmetrics itself, and it reports a :class:`MetricResult` that names its backend: a
number is never shown under a metric's name unless it was computed the way that name promises.
A metric that cannot run (missing weights, missing package) reports ``value=None`` and a ``reason``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import torch
from torchmetrics import Metric

SAME_IDENTITY = "same_identity"
CROSS_IDENTITY = "cross_identity"
#: Attribute editing (PECHead Sec. 4.3, Table 3): derived from the two protocols above by models that can edit.
EDITING = "editing"
#: The two tasks of the editing protocol: frontalisation (target pose yaw = pitch = roll = 0) of a test frame,
#: and expression transfer from a driving frame onto a source frame, keeping the source's pose.
FRONTALISATION = "frontalisation"
EXPRESSION_TRANSFER = "expression_transfer"
EDITING_TASKS = (FRONTALISATION, EXPRESSION_TRANSFER)


@dataclass
class MetricResult:
    """One metric's outcome, as written to ``results.json``."""

    name: str
    value: float | None
    backend: str
    count: int
    higher_is_better: bool
    reason: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ReenactMetric(Metric):
    """Base class: ``update(generated, target, **context)`` then ``result()``.

    Shapes: ``generated`` and ``target`` are ``[N, 3, H, W]`` frames in [0, 1]; ``context`` carries
    what face metrics need (``source`` frames, ``driving_landmarks``...), pixel metrics ignore it.
    ``protocols`` lists the evaluation protocols in which the metric is meaningful: pixel metrics need
    the driving frame to be the ground truth, which only holds for same-identity reconstruction.
    ``editing_tasks`` says which outputs of the editing protocol the metric scores (when ``EDITING`` is among
    its ``protocols``): frontalised images (``FRONTALISATION``) or expression transfers (``EXPRESSION_TRANSFER``).
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = False
    protocols: ClassVar[tuple[str, ...]] = (SAME_IDENTITY,)
    editing_tasks: ClassVar[tuple[str, ...]] = ()
    full_state_update = False

    def backend(self) -> str:
        raise NotImplementedError

    def unavailable_reason(self) -> str | None:
        """Why the metric cannot be computed in this environment, or None when it can."""
        return None

    def result(self) -> MetricResult:
        """The metric over every process's frames, or ``value=None`` with the reason it cannot be given.

        Count and value are read from one synced state: every process calls this (it is a collective
        under DDP), and every process gets the same answer even if its own shard was empty.
        """
        reason = self.unavailable_reason()
        if reason is not None:
            return MetricResult(name=self.name, value=None, backend=self.backend(), count=0,
                                higher_is_better=self.higher_is_better, reason=reason, details=self.details())
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            count = int(self._count().item())
            value = float(self._value()) if count > 0 else None
        return MetricResult(
            name=self.name, value=value, backend=self.backend(), count=count,
            higher_is_better=self.higher_is_better, reason=None if count > 0 else "no frames were evaluated",
            details=self.details(),
        )

    def _value(self) -> torch.Tensor:
        """The metric from the current (already synced) state."""
        raise NotImplementedError

    def compute(self) -> torch.Tensor:
        return self._value()

    def details(self) -> dict[str, Any]:
        return {}

    def _count(self) -> torch.Tensor:
        return self.count  # type: ignore[attr-defined]
