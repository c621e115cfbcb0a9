"""Evaluation metrics registered by name (torchmetrics ``Metric``s, DDP-synced).

This package holds the pixel metrics (L1, PSNR, MS-SSIM); the distribution metrics (FID, FVD) and the
face metrics (AKD, AED, CSIM, ARD, AUH) register here too, from their own modules.
"""

from reenact.metrics import distribution as _distribution  # noqa: F401  (registers FID, FVD)
from reenact.metrics import face as _face  # noqa: F401  (registers AKD, AED, CSIM, ARD, ARE, AUH, NME)
from reenact.metrics import pixel as _pixel  # noqa: F401  (registers the pixel metrics)
from reenact.metrics.base import CROSS_IDENTITY, SAME_IDENTITY, MetricResult, ReenactMetric
from reenact.metrics.registry import build_metrics, get_metric_class, list_metrics, register_metric

DEFAULT_METRICS = ["l1", "psnr", "ms_ssim"]

__all__ = [
    "CROSS_IDENTITY", "DEFAULT_METRICS", "SAME_IDENTITY", "MetricResult", "ReenactMetric", "build_metrics",
    "get_metric_class", "list_metrics", "register_metric",
]
