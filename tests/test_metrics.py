"""Pixel metrics against independent computations, and their reduction semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from torchmetrics.image import MultiScaleStructuralSimilarityIndexMeasure

from reenact.metrics import SAME_IDENTITY, build_metrics, list_metrics
from reenact.metrics.pixel import L1, MSSSIM, PSNR, ms_ssim_scales


def _pair(n: int = 3, size: int = 32, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, size, size, generator=generator)
    generated = (target + noise * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    return generated, target


def test_l1_by_hand() -> None:
    generated, target = _pair()
    metric = L1()
    metric.update(generated[:2], target[:2])
    metric.update(generated[2:], target[2:])
    expected = np.abs(generated.numpy() - target.numpy()).reshape(3, -1).mean(1).mean()
    result = metric.result()
    assert result.value == pytest.approx(float(expected), rel=1e-6)
    assert result.count == 3 and result.reason is None and "mean" in result.backend


def test_psnr_by_hand_is_per_frame_mean() -> None:
    generated, target = _pair(noise=0.1)
    metric = PSNR()
    metric.update(generated, target)
    mse = ((generated.double() - target.double()) ** 2).reshape(3, -1).mean(1).numpy()
    expected = np.mean([10 * math.log10(1 / m) for m in mse])
    assert metric.result().value == pytest.approx(expected, rel=1e-9)


def test_psnr_identical_frames_is_finite() -> None:
    frame = torch.rand(1, 3, 16, 16)
    metric = PSNR()
    metric.update(frame, frame)
    assert metric.result().value == pytest.approx(100.0)


def test_ms_ssim_scales_rule() -> None:
    assert ms_ssim_scales(256, 256) == 5
    assert ms_ssim_scales(161, 161) == 5
    assert ms_ssim_scales(160, 160) == 4
    assert ms_ssim_scales(64, 64) == 3
    assert ms_ssim_scales(20, 20) == 1


def test_ms_ssim_single_scale_equals_skimage_ssim() -> None:
    # At 20 px only one scale is defined, where MS-SSIM is plain SSIM: compare with scikit-image.
    generated, target = _pair(n=2, size=20, noise=0.1)
    metric = MSSSIM()
    metric.update(generated, target)
    expected = []
    for g, t in zip(generated.numpy(), target.numpy(), strict=True):
        expected.append(structural_similarity(
            g.transpose(1, 2, 0), t.transpose(1, 2, 0), channel_axis=2, gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0,
        ))
    result = metric.result()
    assert result.details["scales"] == 1
    assert result.value == pytest.approx(float(np.mean(expected)), abs=2e-3)


def test_ms_ssim_five_scales_equals_torchmetrics_standard() -> None:
    generated, target = _pair(n=2, size=176, noise=0.05)
    metric = MSSSIM()
    metric.update(generated, target)
    reference = MultiScaleStructuralSimilarityIndexMeasure(data_range=1.0)
    reference.update(generated, target)
    assert metric.result().details["scales"] == 5
    assert metric.result().value == pytest.approx(float(reference.compute()), rel=1e-5)


def test_metrics_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="equal shape"):
        L1().update(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 9, 8))


def test_registry_and_protocol_filtering() -> None:
    assert {"l1", "psnr", "ms_ssim"} <= set(list_metrics())
    assert set(build_metrics(["l1", "psnr"], SAME_IDENTITY)) == {"l1", "psnr"}
    # Pixel metrics compare against the driving frame, which is not ground truth across identities.
    assert build_metrics(["l1", "psnr", "ms_ssim"], "cross_identity") == {}
    with pytest.raises(KeyError, match="unknown metric"):
        build_metrics(["nope"], SAME_IDENTITY)


def test_empty_metric_reports_reason_not_value() -> None:
    result = L1().result()
    assert result.value is None and result.reason == "no frames were evaluated"


def test_sum_reduction_matches_concatenation() -> None:
    # What DDP sync does: summing the states of two shards equals one metric over all frames.
    generated, target = _pair(n=4)
    whole, first, second = PSNR(), PSNR(), PSNR()
    whole.update(generated, target)
    first.update(generated[:1], target[:1])
    second.update(generated[1:], target[1:])
    merged = first.total + second.total, first.count + second.count
    assert float(merged[0] / merged[1]) == pytest.approx(whole.result().value, rel=1e-12)
