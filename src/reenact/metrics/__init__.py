"""Evaluation metrics registered by name (torchmetrics ``Metric``s, DDP-synced).

This package holds the pixel metrics (L1, PSNR, MS-SSIM); the perceptual metric (LPIPS), the distribution
metrics (FID, FVD) and the face metrics (AKD, AED, CSIM, ARD, AUH) register here too, from their own modules.
"""

from reenact.metrics import distribution as _distribution  # noqa: F401  (registers FID, FVD)
from reenact.metrics import face as _face  # noqa: F401  (registers AKD, AED, CSIM, NME)
from reenact.metrics import face_pose as _face_pose  # noqa: F401  (registers ARD, ARE, AUH)
from reenact.metrics import lpips as _lpips  # noqa: F401  (registers LPIPS)
from reenact.metrics import pixel as _pixel  # noqa: F401  (registers the pixel metrics)
from reenact.metrics.base import (
    CROSS_IDENTITY,
    EDITING,
    EDITING_TASKS,
    EXPRESSION_TRANSFER,
    FRONTALISATION,
    SAME_IDENTITY,
    MetricResult,
    ReenactMetric,
)
from reenact.metrics.registry import build_metrics, get_metric_class, list_metrics, register_metric

#: What a model evaluates when its config names no metrics: the papers' full set (PECHead Tables 1-2, FOMM).
#: Each metric runs only in the protocols it is defined for (``ReenactMetric.protocols``); ``are`` only runs in
#: the editing protocol (PECHead Table 3), i.e. only for models that can edit (``supports_editing``).
DEFAULT_METRICS = ["l1", "psnr", "ms_ssim", "fid", "fvd", "akd", "akd_euclidean", "nme", "aed", "csim", "ard",
                   "are", "auh", "lpips"]
#: The quick subset the ``tiny`` presets use on CPU: pixel metrics plus the dlib-based face metrics.
QUICK_METRICS = ["l1", "psnr", "ms_ssim", "akd", "aed", "csim", "ard", "are", "auh"]

__all__ = [
    "CROSS_IDENTITY", "DEFAULT_METRICS", "EDITING", "EDITING_TASKS", "EXPRESSION_TRANSFER", "FRONTALISATION",
    "QUICK_METRICS", "SAME_IDENTITY", "MetricResult", "ReenactMetric",
    "build_metrics", "get_metric_class", "list_metrics", "register_metric",
]
