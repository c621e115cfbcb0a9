"""Face metrics: AKD, AED, CSIM, ARD, ARE, AUH and NME, on landmarks, identity embeddings, pose and AUs.

Every frame is converted to uint8 RGB and resized to 256x256 (bicubic up, area down) before analysis: the
papers evaluate at 256 px, and dlib's HOG detector misses faces below ~80 px. Landmarks are therefore pixels
of the 256x256 frame. Frames in which a needed face is not found (on either side of a comparison) are
skipped and counted (``details.skipped_frames``); ``count`` is the number of frames that entered the value.

========================= =====================================================================================
name                      definition (per frame, then averaged over counted frames)
========================= =====================================================================================
``akd``                   mean absolute coordinate difference ``mean_{i,c} |g_ic - d_ic|`` of the 68 landmarks
                          of generated ``g`` and driving ``d`` frames, px at 256 (FOMM, Siarohin et al. 2019)
``akd_euclidean``         per-point Euclidean mean ``mean_i ||g_i - d_i||``, px at 256
``aed``                   ``||e(g) - e(d)||^2`` of identity embeddings, generated vs driving (FOMM's AED)
``csim``                  cosine similarity of the embeddings of the source frame and the generated frame
                          (PECHead supplement Sec. 2.4); higher is better
``ard``                   mean over (yaw, pitch, roll) of ``|angle(g) - angle(d)|``, degrees (PECHead Sec. 2.4)
``are``                   the same against the frontal target pose (0, 0, 0): ``mean |angle(g)|`` (editing)
``auh``                   normalised Hamming distance ``mean_k [a_k(g) != a_k(d)]`` of binary AU vectors
                          (PECHead Sec. 2.4); ``details.accuracy`` is ``1 - auh``
``nme``                   ``mean_i ||g_i - d_i|| / ||d_36 - d_45||``: landmark error normalised by the driving
                          frame's inter-ocular (outer eye corner) distance (300-W convention; LPMM Table 1)
========================= =====================================================================================

The driving frame's landmarks are detected with the same backend as the generated frame's (not taken from
annotations), so a detector's bias cancels as in FOMM's evaluation. Backends: landmarks
(:mod:`reenact.face.landmarks`, default ``dlib``), identity (:mod:`reenact.face.identity`, default ``dlib``),
head pose (:mod:`reenact.face.pose`) and AUs (:mod:`reenact.face.action_units`), which both fit the shared 3D
face model to the landmarks by default; ``ARD/ARE(pose="mediapipe")`` read MediaPipe's transformation matrix
instead and ``AUH(au_backend="py-feat")`` runs py-feat's 20-AU detector (each unavailable, with the reason,
until its model files are present). The papers used face-alignment (AKD), ArcFace (CSIM), Deep3DFaceRecon (ARD) and
py-feat (AUH); numbers from other backends are comparable between models evaluated here, not with the
papers' tables, which is why every result names its backend.

States are sums and counts reduced with ``sum`` (DDP-safe); :meth:`FaceMetric.result` reads value, count
and details from one synced state. Detections are cached per process by frame content, so metrics of one
protocol that analyse the same frames detect each face once.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from reenact.face.identity import IdentityBackend, get_identity_backend
from reenact.face.landmarks import LandmarkBackend, get_landmark_backend
from reenact.metrics.base import (
    CROSS_IDENTITY,
    SAME_IDENTITY,
    MetricResult,
    ReenactMetric,
)
from reenact.metrics.registry import register_metric

#: Frame side at which faces are analysed and AKD is measured (FOMM / PECHead evaluation size).
EVAL_SIZE = 256
#: Detections kept in the per-process cache (a 256 px frame is hashed, not stored).
_CACHE_SIZE = 8192
_LANDMARK_CACHE: OrderedDict[tuple[str, bytes], np.ndarray | None] = OrderedDict()


# ----------------------------------------------------------------------------------------- per-frame maths


def akd_per_frame(generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """FOMM AKD: ``[N, K, 2]`` x2 -> ``[N]`` mean absolute coordinate difference (pixels)."""
    return np.abs(np.asarray(generated, np.float64) - np.asarray(driving, np.float64)).mean(axis=(1, 2))


def akd_euclidean_per_frame(generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """``[N, K, 2]`` x2 -> ``[N]`` mean per-point Euclidean distance (pixels)."""
    return np.linalg.norm(np.asarray(generated, np.float64) - np.asarray(driving, np.float64), axis=-1).mean(1)


def nme_per_frame(generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """``[N, 68, 2]`` x2 -> ``[N]`` mean point error over the driving outer-eye-corner distance (36-45), in
    percent (as LPMM Table 1 reports it)."""
    driving = np.asarray(driving, np.float64)
    inter_ocular = np.linalg.norm(driving[:, 36] - driving[:, 45], axis=-1)
    return 100.0 * akd_euclidean_per_frame(generated, driving) / np.maximum(inter_ocular, 1e-9)


def hamming_per_frame(generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """Binary ``[N, K]`` x2 -> ``[N]`` fraction of the K units that differ (normalised Hamming distance)."""
    return (np.asarray(generated, bool) != np.asarray(driving, bool)).mean(1)


def cosine_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, D]`` x2 -> ``[N]`` cosine similarities."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def to_uint8_frames(frames: torch.Tensor, size: int = EVAL_SIZE) -> np.ndarray:
    """``[N, 3, H, W]`` in [0, 1] -> ``[N, size, size, 3]`` uint8 RGB (bicubic upsampling, area downsampling).

    Frames are quantised to uint8 first, as they would be when written to video and re-read.
    """
    array = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    out = np.empty((array.shape[0], size, size, 3), dtype=np.uint8)
    for index, frame in enumerate(array):
        if frame.shape[:2] == (size, size):
            out[index] = frame
        else:
            interpolation = cv2.INTER_CUBIC if min(frame.shape[:2]) < size else cv2.INTER_AREA
            out[index] = cv2.resize(frame, (size, size), interpolation=interpolation)
    return out


def detect_landmarks(backend: LandmarkBackend, key: str, frames: np.ndarray) -> list[np.ndarray | None]:
    """Landmarks ``[68, 2]`` (or ``None``) for each ``[H, W, 3]`` uint8 frame, cached by frame content."""
    found: list[np.ndarray | None] = []
    for frame in frames:
        digest = (key, hashlib.blake2b(np.ascontiguousarray(frame).tobytes(), digest_size=16).digest())
        if digest in _LANDMARK_CACHE:
            _LANDMARK_CACHE.move_to_end(digest)
            found.append(_LANDMARK_CACHE[digest])
            continue
        points = backend.detect(frame)
        _LANDMARK_CACHE[digest] = points
        if len(_LANDMARK_CACHE) > _CACHE_SIZE:
            _LANDMARK_CACHE.popitem(last=False)
        found.append(points)
    return found


# --------------------------------------------------------------------------------------------- metrics


class FaceMetric(ReenactMetric):
    """A per-frame face score averaged over the frames where every needed face was found.

    Args:
        landmarks: landmark backend name (:data:`reenact.face.landmarks.LANDMARK_BACKENDS`).
        identity: identity backend name (:data:`reenact.face.identity.IDENTITY_BACKENDS`), for AED/CSIM.
        eval_size: analysis frame side in pixels (256, the papers' evaluation size).
        landmark_options / identity_options: keyword arguments of the backends (e.g. ``model_path``).
    """

    uses_identity: ClassVar[bool] = False
    #: Number of per-part sums kept for ``details`` (angles for ARD/ARE, AUs for AUH).
    parts: ClassVar[tuple[str, ...]] = ()
    definition: ClassVar[str] = ""

    def __init__(self, landmarks: str = "dlib", identity: str = "dlib", eval_size: int = EVAL_SIZE,
                 landmark_options: dict[str, Any] | None = None, identity_options: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eval_size = eval_size
        self._landmark_key = f"{landmarks}:{sorted((landmark_options or {}).items())}"
        self.landmark_backend: LandmarkBackend = get_landmark_backend(landmarks, **(landmark_options or {}))
        self.identity_backend: IdentityBackend | None = (
            get_identity_backend(identity, **(identity_options or {})) if self.uses_identity else None
        )
        self._unavailable: str | None = None  # checked once, at the first update
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("frames", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("skipped", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("part_totals", default=torch.zeros(len(self.parts), dtype=torch.float64),
                       dist_reduce_fx="sum")

    # ------------------------------------------------------------------ description
    def backend(self) -> str:
        names = [f"landmarks: {self.landmark_backend.describe()} at {self.eval_size}x{self.eval_size}"]
        if self.identity_backend is not None:
            names.append(f"identity: {self.identity_backend.describe()}")
        return "; ".join(names + self._extra_backends())

    def _extra_backends(self) -> list[str]:
        return []

    def unavailable_reason(self) -> str | None:
        reason = self.landmark_backend.unavailable_reason()
        if reason is None and self.identity_backend is not None:
            reason = self.identity_backend.unavailable_reason()
        return reason

    # ------------------------------------------------------------------ state
    def update(self, generated: torch.Tensor, target: torch.Tensor, **context: Any) -> None:
        """``generated``, ``target`` (driving): ``[N, 3, H, W]`` in [0, 1]; ``context["source"]``:
        ``[B, S, 3, H, W]`` (CSIM), with the N frames being B videos flattened video-major."""
        if generated.shape != target.shape or generated.ndim != 4 or generated.shape[1] != 3:
            raise ValueError(f"expected two [N, 3, H, W] tensors of equal shape, got {tuple(generated.shape)} "
                             f"and {tuple(target.shape)}")
        if self._unavailable is None:
            self._unavailable = self.unavailable_reason() or ""
        if self._unavailable:
            # Nothing can be measured; result() reports the reason. Raising here would abort the whole
            # evaluation for the sake of one metric.
            self.frames += int(generated.shape[0])
            return
        scores, parts = self.score(to_uint8_frames(generated, self.eval_size),
                                   to_uint8_frames(target, self.eval_size), context)
        valid = ~np.isnan(scores)
        self.frames += int(scores.shape[0])
        self.skipped += int((~valid).sum())
        self.count += int(valid.sum())
        self.total += float(scores[valid].sum())
        if self.parts:
            self.part_totals += torch.as_tensor(parts[valid].sum(0), dtype=torch.float64,
                                                device=self.part_totals.device)

    def score(self, generated: np.ndarray, driving: np.ndarray,
              context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame scores ``[N]`` (NaN = skipped) and per-part values ``[N, len(parts)]`` of uint8 frames."""
        raise NotImplementedError

    def _landmarks(self, frames: np.ndarray) -> list[np.ndarray | None]:
        return detect_landmarks(self.landmark_backend, self._landmark_key, frames)

    def _pairs(self, generated: np.ndarray, driving: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices of frames with a face on both sides, and their landmarks ``[M, 68, 2]`` each."""
        found_g, found_d = self._landmarks(generated), self._landmarks(driving)
        index = np.array([i for i, (g, d) in enumerate(zip(found_g, found_d, strict=True))
                          if g is not None and d is not None], dtype=int)
        if index.size == 0:
            return index, np.zeros((0, 68, 2)), np.zeros((0, 68, 2))
        return index, np.stack([found_g[i] for i in index]), np.stack([found_d[i] for i in index])

    def _value(self) -> torch.Tensor:
        return self.total / self.count.clamp(min=1)

    def details(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "frames": int(self.frames), "skipped_frames": int(self.skipped), "eval_size": self.eval_size,
            "definition": self.definition,
        }
        if self.parts:
            means = (self.part_totals / self.count.clamp(min=1)).tolist()
            details["per_part"] = dict(zip(self.parts, means, strict=True))
        return details

    def result(self) -> MetricResult:
        """Value, count and details (skipped frames, per-part means) from one synced state.

        The base reads details outside the sync, i.e. from this process only; here everything is read
        inside it, so every process reports the totals of all processes.
        """
        reason = self.unavailable_reason()
        if reason is not None:
            return MetricResult(name=self.name, value=None, backend=self.backend(), count=0,
                                higher_is_better=self.higher_is_better, reason=reason, details={})
        with self.sync_context(dist_sync_fn=self.dist_sync_fn, should_sync=self.sync_on_compute):
            count = int(self.count.item())
            value = float(self._value()) if count > 0 else None
            details = self.details()
        if count > 0:
            reason = None
        elif details["frames"] > 0:
            reason = f"no face found in any of {details['frames']} frames (every frame skipped)"
        else:
            reason = "no frames were evaluated"
        return MetricResult(name=self.name, value=value, backend=self.backend(), count=count,
                            higher_is_better=self.higher_is_better, reason=reason, details=details)


def scatter_rows(size: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` at ``index`` of a NaN array of ``size`` (NaN marks skipped frames); keeps trailing dims."""
    out = np.full((size, *values.shape[1:]), np.nan)
    out[index] = values
    return out


class _LandmarkDistance(FaceMetric):
    protocols = (SAME_IDENTITY,)

    def per_frame(self, generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def score(self, generated: np.ndarray, driving: np.ndarray,
              context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        index, points_g, points_d = self._pairs(generated, driving)
        return scatter_rows(len(generated), index, self.per_frame(points_g, points_d)), np.zeros((len(generated), 0))


@register_metric
class AKD(_LandmarkDistance):
    """Average keypoint distance, FOMM's convention: mean absolute coordinate difference, px at 256x256."""

    name = "akd"
    definition = "mean |x_gen - x_drv| over 68 landmarks and both coordinates, px at 256x256 (FOMM)"

    def per_frame(self, generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
        return akd_per_frame(generated, driving)


@register_metric
class AKDEuclidean(_LandmarkDistance):
    """Average keypoint distance as the per-point Euclidean mean, px at 256x256."""

    name = "akd_euclidean"
    definition = "mean ||p_gen - p_drv||_2 over 68 landmarks, px at 256x256"

    def per_frame(self, generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
        return akd_euclidean_per_frame(generated, driving)


@register_metric
class NME(_LandmarkDistance):
    """Landmark NME of generated vs driving frames, normalised by the driving inter-ocular distance."""

    name = "nme"
    definition = "100 * mean ||p_gen - p_drv||_2 / ||p_drv[36] - p_drv[45]||_2 (outer eye corners), in %"

    def per_frame(self, generated: np.ndarray, driving: np.ndarray) -> np.ndarray:
        return nme_per_frame(generated, driving)


@register_metric
class AED(FaceMetric):
    """Average euclidean distance of identity embeddings, FOMM's convention: squared L2, generated vs driving."""

    name = "aed"
    uses_identity = True
    protocols = (SAME_IDENTITY,)
    definition = "||e(gen) - e(drv)||_2^2 of identity embeddings (FOMM)"

    def score(self, generated: np.ndarray, driving: np.ndarray,
              context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        assert self.identity_backend is not None
        index, points_g, points_d = self._pairs(generated, driving)
        values = np.array([
            float(np.sum((self.identity_backend.embed(generated[i], g) - self.identity_backend.embed(driving[i], d))
                         ** 2))
            for i, g, d in zip(index, points_g, points_d, strict=True)
        ])
        return scatter_rows(len(generated), index, values), np.zeros((len(generated), 0))


@register_metric
class CSIM(FaceMetric):
    """Cosine similarity of identity embeddings of the source frame and each generated frame (PECHead 2.4).

    The source is ``context["source"][b, 0]`` for the frames of video ``b``; frames are skipped when the
    source or the generated frame has no detected face, or when no source is given.
    """

    name = "csim"
    uses_identity = True
    higher_is_better = True
    protocols = (SAME_IDENTITY, CROSS_IDENTITY)
    definition = "cos(e(source), e(gen)) of identity embeddings (PECHead supplement 2.4)"

    def score(self, generated: np.ndarray, driving: np.ndarray,
              context: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        assert self.identity_backend is not None
        empty = np.zeros((len(generated), 0))
        source = context.get("source")
        if not isinstance(source, torch.Tensor) or source.ndim != 5 or len(generated) % source.shape[0]:
            return np.full(len(generated), np.nan), empty
        per_video = len(generated) // source.shape[0]
        source_frames = to_uint8_frames(source[:, 0], self.eval_size)
        source_points = self._landmarks(source_frames)
        source_embeddings = [None if p is None else self.identity_backend.embed(f, p)
                             for f, p in zip(source_frames, source_points, strict=True)]
        scores = np.full(len(generated), np.nan)
        for i, points in enumerate(self._landmarks(generated)):
            reference = source_embeddings[i // per_video]
            if points is None or reference is None:
                continue
            scores[i] = cosine_per_frame(reference[None], self.identity_backend.embed(generated[i], points)[None])[0]
        return scores, empty


__all__ = [
    "AED", "AKD", "CSIM", "EVAL_SIZE", "NME", "AKDEuclidean", "FaceMetric", "akd_euclidean_per_frame",
    "akd_per_frame", "cosine_per_frame", "detect_landmarks", "hamming_per_frame", "nme_per_frame", "scatter_rows",
    "to_uint8_frames",
]
