"""Pixel metrics of same-identity reconstruction: L1, PSNR, MS-SSIM (PECHead Table 1, FOMM Sec. 4).

All three are averaged per frame and reduced across processes as (sum, count) pairs, so a 2-process
evaluation gives the same number as a 1-process one.
"""

from __future__ import annotations

from typing import Any

import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from reenact.metrics.base import ReenactMetric
from reenact.metrics.registry import register_metric

#: Wang et al. 2003 scale weights, finest scale first.
MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _check(generated: torch.Tensor, target: torch.Tensor) -> None:
    if generated.shape != target.shape or generated.ndim != 4:
        raise ValueError(f"expected two [N, 3, H, W] tensors of equal shape, got {tuple(generated.shape)} "
                         f"and {tuple(target.shape)}")


class _FrameAverage(ReenactMetric):
    """Mean of a per-frame score; subclasses implement ``per_frame``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def per_frame(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, generated: torch.Tensor, target: torch.Tensor, **context: Any) -> None:
        _check(generated, target)
        scores = self.per_frame(generated.float().clamp(0, 1), target.float().clamp(0, 1))
        self.total += scores.double().sum()
        self.count += scores.numel()

    def _value(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1)


@register_metric
class L1(_FrameAverage):
    """Mean absolute error of RGB values in [0, 1] (FOMM's L1 reconstruction metric)."""

    name = "l1"

    def backend(self) -> str:
        return "torch: mean |generated - driving| on [0,1] RGB"

    def per_frame(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (generated - target).abs().flatten(1).mean(1)


@register_metric
class PSNR(_FrameAverage):
    """Peak signal-to-noise ratio in dB with peak 1, per frame, then averaged over frames.

    A frame identical to its target would give +inf; its MSE is floored at 1e-10 (100 dB) so one
    perfect frame cannot make the mean infinite.
    """

    name = "psnr"
    higher_is_better = True

    def backend(self) -> str:
        return "torch: 10*log10(1/MSE) per frame, data range 1, mean over frames"

    def per_frame(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mse = (generated.double() - target.double()).pow(2).flatten(1).mean(1).clamp(min=1e-10)
        return 10.0 * torch.log10(1.0 / mse)


def ms_ssim_scales(height: int, width: int, kernel_size: int = 11, max_scales: int = 5) -> int:
    """Number of MS-SSIM scales defined at this size.

    Each scale halves the image, and the Gaussian window must still fit at the coarsest one:
    torchmetrics requires ``min(H, W) > (kernel_size - 1) * 2 ** (scales - 1)``.
    """
    scales = max_scales
    while scales > 1 and min(height, width) <= (kernel_size - 1) * 2 ** (scales - 1):
        scales -= 1
    return scales


@register_metric
class MSSSIM(_FrameAverage):
    """Multi-scale SSIM (Wang et al. 2003) per frame, averaged.

    The standard five scales need frames larger than 160 px; at smaller sizes the coarsest scales are
    dropped and the remaining weights renormalised. The number of scales used is part of the result
    (``details.scales``), so numbers at different resolutions are never silently compared.
    """

    name = "ms_ssim"
    higher_is_better = True

    def __init__(self, kernel_size: int = 11, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.kernel_size = kernel_size
        self._scales: int | None = None

    def backend(self) -> str:
        scales = "up to 5 scales (as many as the frame size allows)" if self._scales is None else \
            f"{self._scales} scales"
        return f"torchmetrics multiscale_structural_similarity_index_measure, gaussian {self.kernel_size}, " \
               f"{scales}, relu-normalised"

    def details(self) -> dict[str, Any]:
        return {"scales": self._scales, "kernel_size": self.kernel_size}

    def per_frame(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        scales = ms_ssim_scales(generated.shape[-2], generated.shape[-1], self.kernel_size)
        if self._scales is not None and scales != self._scales:
            raise ValueError(f"MS-SSIM: frames of different sizes in one evaluation ({scales} vs {self._scales} "
                             "scales)")
        self._scales = scales
        betas = torch.tensor(MS_SSIM_BETAS[:scales], dtype=torch.float64)
        betas = tuple((betas / betas.sum()).tolist())
        return multiscale_structural_similarity_index_measure(
            generated, target, kernel_size=self.kernel_size, betas=betas, data_range=1.0, reduction="none",
            normalize="relu",
        )
