"""The landmark-parameter morphable model (LPMM, Lee et al. 2023, Sec. 3.1, Eq. 1).

Facial landmarks ``L = (x_1, y_1, ..., x_68, y_68) in R^136`` (iBUG 68 layout) of a training set are aligned
to the centre of a square frame (no translation component), and PCA gives the mean ``L_bar`` and the
eigenvectors ``e_i`` of their covariance, sorted by explained variance. A landmark set is then

    L_new = L_bar + sum_{i=1..k} p_i e_i                                            (Eq. 1)

with ``k <= m = 2n = 136`` parameters ``p``.

Alignment (:func:`align_landmarks`): the paper crops every frame around the detected face so that the face
sits in the centre of a square frame; our frames are already face crops, so we remove the remaining
translation exactly by moving the landmark centroid to the frame centre, and express coordinates in units of
the frame side (``(L - centroid) / image_size``). Scale and rotation are kept: they are pose, the thing the
model is meant to control. Every aligned set has zero centroid, so all principal directions with non-zero
variance are translation-free; the two translation directions end up last with zero variance.

Parameter indices are 0-based in code (``p[0]`` is the paper's ``p_1``).
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor, nn

NUM_LANDMARKS = 68
LANDMARK_DIM = 2 * NUM_LANDMARKS
#: Outer eye corners in the iBUG 68 layout: the inter-ocular distance normalises NME (LPMM Eq. 5).
OUTER_EYE_CORNERS = (36, 45)


def align_landmarks(landmarks: Tensor, image_size: int | float) -> Tensor:
    """Remove translation: ``[..., 68, 2]`` pixels -> ``[..., 136]`` centred on the centroid, in frame units."""
    if landmarks.shape[-2:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected [..., 68, 2] landmarks, got {tuple(landmarks.shape)}")
    centred = landmarks - landmarks.mean(dim=-2, keepdim=True)
    return (centred / float(image_size)).flatten(-2)


def nme(predicted: Tensor, target: Tensor) -> Tensor:
    """Normalised mean error (LPMM Eq. 5): mean point-to-point distance divided by the inter-ocular distance
    (outer eye corners 36, 45) of ``target``. ``[..., 68, 2]`` each (any common unit) -> ``[...]``."""
    distance = (predicted - target).norm(dim=-1).mean(-1)
    interocular = (target[..., OUTER_EYE_CORNERS[0], :] - target[..., OUTER_EYE_CORNERS[1], :]).norm(dim=-1)
    return distance / interocular.clamp_min(1e-8)


class LandmarkPCA(nn.Module):
    """PCA basis of aligned landmarks, stored as buffers so it travels with the model's checkpoint.

    Args:
        num_components: ``k``, the parameters the model uses (default 40, the paper's choice; at most 136).

    Buffers: ``mean [136]`` (``L_bar``), ``components [136, 136]`` (rows ``e_i``, all ``m = 136`` kept so
    reconstruction error can be measured for any ``k``), ``variance [136]`` (eigenvalues), ``fitted``
    (``[]`` bool), ``num_samples`` (``[]`` int64).
    """

    def __init__(self, num_components: int = 40) -> None:
        super().__init__()
        if not 1 <= num_components <= LANDMARK_DIM:
            raise ValueError(f"num_components must be in 1..{LANDMARK_DIM}, got {num_components}")
        self.num_components = num_components
        self.register_buffer("mean", torch.zeros(LANDMARK_DIM))
        self.register_buffer("components", torch.eye(LANDMARK_DIM))
        self.register_buffer("variance", torch.ones(LANDMARK_DIM))
        self.register_buffer("fitted", torch.tensor(False))
        self.register_buffer("num_samples", torch.tensor(0, dtype=torch.int64))

    # ------------------------------------------------------------------------------------------ fitting
    @torch.no_grad()
    def fit(self, aligned: Tensor) -> LandmarkPCA:
        """Fit to aligned landmarks ``[N, 136]`` (see :func:`align_landmarks`); ``N >= 2``.

        PCA by SVD of the centred data in float64 (the covariance eigendecomposition, computed stably). Signs
        are fixed so the largest-magnitude entry of every component is positive, which makes the basis a
        deterministic function of the data (identical on every DDP rank).
        """
        if aligned.ndim != 2 or aligned.shape[1] != LANDMARK_DIM or aligned.shape[0] < 2:
            raise ValueError(f"expected [N >= 2, {LANDMARK_DIM}] aligned landmarks, got {tuple(aligned.shape)}")
        data = aligned.detach().to(device="cpu", dtype=torch.float64)
        mean = data.mean(0)
        _, singular, vh = torch.linalg.svd(data - mean, full_matrices=True)
        variance = torch.zeros(LANDMARK_DIM, dtype=torch.float64)
        variance[: singular.numel()] = singular.pow(2) / (data.shape[0] - 1)
        pivot = vh.abs().argmax(dim=1)
        signs = torch.sign(vh.gather(1, pivot[:, None])).squeeze(1)
        vh = vh * torch.where(signs == 0, torch.ones_like(signs), signs)[:, None]
        self.mean.copy_(mean.to(self.mean))
        self.components.copy_(vh.to(self.components))
        self.variance.copy_(variance.to(self.variance))
        self.fitted.fill_(True)
        self.num_samples.fill_(data.shape[0])
        return self

    def fit_landmarks(self, landmarks: Tensor, image_size: int | float) -> LandmarkPCA:
        """Fit to pixel landmarks ``[N, 68, 2]`` of ``image_size`` frames."""
        return self.fit(align_landmarks(landmarks, image_size))

    # ---------------------------------------------------------------------------------------- Eq. 1 API
    def basis(self, k: int | None = None) -> Tensor:
        """The first ``k`` eigenvectors ``[k, 136]`` (default :attr:`num_components`)."""
        return self.components[: k or self.num_components]

    @property
    def std(self) -> Tensor:
        """Standard deviation of each of the first ``k`` parameters over the training set, ``[k]``."""
        return self.variance[: self.num_components].clamp_min(0).sqrt()

    def project(self, aligned: Tensor, k: int | None = None) -> Tensor:
        """Parameters ``p = E_k (L - L_bar)`` of aligned landmarks ``[..., 136]`` -> ``[..., k]``."""
        basis = self.basis(k)
        return (aligned - self.mean.to(aligned.dtype)) @ basis.T.to(aligned.dtype)

    def reconstruct(self, params: Tensor) -> Tensor:
        """Eq. 1: ``L_bar + sum_i p_i e_i`` for ``params [..., k]`` -> aligned landmarks ``[..., 136]``."""
        basis = self.basis(params.shape[-1])
        return self.mean.to(params.dtype) + params @ basis.to(params.dtype)

    def to_points(self, aligned: Tensor, image_size: int | float, centre: Tensor | None = None) -> Tensor:
        """Aligned ``[..., 136]`` -> pixel points ``[..., 68, 2]`` around ``centre [..., 2]`` (default: the
        frame centre ``(image_size - 1) / 2``, pixel centres at integer coordinates)."""
        points = aligned.unflatten(-1, (NUM_LANDMARKS, 2)) * float(image_size)
        if centre is None:
            return points + (float(image_size) - 1) / 2
        return points + centre.unsqueeze(-2)

    def reconstruction_nme(self, landmarks: Tensor, image_size: int | float, k: int) -> Tensor:
        """Mean NME of projecting pixel landmarks ``[N, 68, 2]`` onto ``k`` components and back (the best an
        LP-regressor with ``k`` parameters can do; Table 1's lower bound)."""
        aligned = align_landmarks(landmarks.double(), image_size)
        restored = self.reconstruct(self.project(aligned, k).to(torch.float64))
        target = aligned.unflatten(-1, (NUM_LANDMARKS, 2))
        return nme(restored.unflatten(-1, (NUM_LANDMARKS, 2)), target).mean()

    def fingerprint(self) -> str:
        """Short hash of ``(k, mean, basis)``: presets record it to refuse a different basis."""
        digest = hashlib.sha256()
        digest.update(str(self.num_components).encode())
        for tensor in (self.mean, self.basis()):
            digest.update(tensor.detach().to("cpu", torch.float32).numpy().round(5).tobytes())
        return digest.hexdigest()[:16]
