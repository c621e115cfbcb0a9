"""Metrics by name, like timm's model registry: ``build_metrics(["l1", "psnr"])``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reenact.metrics.base import ReenactMetric

_METRICS: dict[str, type[ReenactMetric]] = {}


def register_metric(cls: type[ReenactMetric]) -> type[ReenactMetric]:
    if cls.name in _METRICS and _METRICS[cls.name] is not cls:
        raise ValueError(f"metric {cls.name!r} registered twice")
    _METRICS[cls.name] = cls
    return cls


def list_metrics() -> list[str]:
    return sorted(_METRICS)


def get_metric_class(name: str) -> type[ReenactMetric]:
    try:
        return _METRICS[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; registered metrics: {', '.join(list_metrics())}") from None


def build_metrics(names: list[str], protocol: str) -> dict[str, ReenactMetric]:
    """Instantiate the named metrics that are meaningful for ``protocol``."""
    metrics = {}
    for name in names:
        cls = get_metric_class(name)
        if protocol in cls.protocols:
            metrics[name] = cls()
    return metrics
