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
    """

    name: ClassVar[str]
    higher_is_better: ClassVar[bool] = False
    protocols: ClassVar[tuple[str, ...]] = (SAME_IDENTITY,)
    full_state_update = False

    def backend(self) -> str:
        raise NotImplementedError

    def unavailable_reason(self) -> str | None:
        """Why the metric cannot be computed in this environment, or None when it can."""
        return None

    def result(self) -> MetricResult:
        reason = self.unavailable_reason()
        count = int(self._count().item()) if reason is None else 0
        if reason is None and count == 0:
            reason = "no frames were evaluated"
        value = None if reason is not None else float(self.compute())
        return MetricResult(
            name=self.name, value=value, backend=self.backend(), count=count,
            higher_is_better=self.higher_is_better, reason=reason, details=self.details(),
        )

    def details(self) -> dict[str, Any]:
        return {}

    def _count(self) -> torch.Tensor:
        return self.count  # type: ignore[attr-defined]
