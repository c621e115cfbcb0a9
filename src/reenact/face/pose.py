"""Head pose (yaw, pitch, roll in degrees) from 68 landmarks: the inverse of :meth:`FaceModel3D.project`.

The fit minimises, per face, the squared distance between the observed 2D landmarks and the weak-perspective
projection ``scale * (R(pose) @ X)[:2] + translation`` of the shared 3D landmark model
(:mod:`reenact.face.model3d`), where ``X = mean + identity @ identity_basis + expression deltas``. It is a
PnP-style fit for an orthographic camera:

1. **Initialisation (closed form).** A 2x3 affine camera ``A`` and translation are solved by linear least
   squares from the mean shape to the observations; the nearest scaled rotation ``s [r1; r2]`` comes from the
   SVD of ``A`` (``s`` = mean singular value, ``[r1; r2] = U V^T``), ``r3 = r1 x r2``, then Euler angles.
2. **Refinement (Levenberg-Marquardt).** Euler angles, log-scale, translation and -- with ``fit_shape`` --
   the identity and expression coefficients are refined jointly, batched over faces (central-difference
   Jacobians of the batched model). Shape coefficients carry Gaussian priors (identity ~ N(0, 1),
   expression shrunk towards 0 and projected onto ``[0, 1]``), so a noisy detector cannot explain a head
   turn by a deformed face.

Why fit the shape: a fixed mean shape attributes identity differences (a longer nose, a wider jaw) to
rotation. On exact synthetic landmarks (48 frames, 8 identities) the mean absolute error is 2.4 / 1.9 / 0.13
degrees (yaw / pitch / roll) with the mean shape and 0.008 / 0.005 / 0.001 with the shape fitted. On dlib
landmarks of the same renders detector noise dominates and both are similar (mean shape 1.9 / 3.4 / 1.0,
fitted 2.4 / 3.3 / 1.1); the fit is kept because it is exact where landmarks are and because the action-unit
estimator needs its expression coefficients. The pose follows the convention of
:func:`reenact.face.model3d.rotation_matrix`: ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``, positive yaw turns the
nose to the image right, positive pitch looks up, positive roll tilts clockwise in the image.

Backends by name (:func:`get_pose_backend`): ``landmarks-3dmm`` (this fit, the default, on the landmarks of
any landmark backend) and ``mediapipe`` (MediaPipe FaceLandmarker's facial transformation matrix converted
by :func:`pose_from_transformation_matrix`; needs the user-supplied ``face_landmarker.task``,
``$REENACT_MEDIAPIPE_TASK``).

Landmarks are fitted in pixels (square pixels, so weak perspective holds there for any frame shape); the
result's scale and translation are in pixels too. Observations are first normalised by their centroid and
RMS radius so the priors and the stopping tolerance do not depend on the face's size in the image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from reenact.face.backend import FaceBackend
from reenact.face.model3d import NUM_LANDMARKS, FaceModel3D, rotation_matrix

#: Standard deviation of the landmark noise assumed by the priors, in units of the face's RMS radius
#: (about 2% of the face width: the typical error of dlib's predictor on a 256 px face).
LANDMARK_SIGMA = 0.02
#: Prior weight of the expression coefficients (a Gaussian of std 1/5 around 0: expressions are sparse). On
#: dlib landmarks of synthetic renders a weak prior (0.5) let detector noise on the brows read as brow raise
#: or lower (AU accuracy 0.73); 5 gave 0.88 with unchanged pose error, so a coefficient must be clearly
#: supported by the landmarks before it crosses the AU threshold.
EXPRESSION_PRIOR = 5.0


@lru_cache(maxsize=1)
def _model() -> FaceModel3D:
    return FaceModel3D()


@dataclass
class PoseFit:
    """Fitted camera and shape for ``N`` faces (numpy float64).

    Attributes:
        pose: ``[N, 3]`` (yaw, pitch, roll) degrees.
        scale: ``[N]`` pixels per model unit (half a face width).
        translation: ``[N, 2]`` pixel position of the model origin.
        identity: ``[N, I]`` identity coefficients (zeros without ``fit_shape``).
        expression: ``[N, E]`` expression coefficients in ``[0, 1]`` (zeros without ``fit_shape``).
        rms_error: ``[N]`` RMS reprojection error in pixels.
    """

    pose: np.ndarray
    scale: np.ndarray
    translation: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    rms_error: np.ndarray

    def shape_3d(self) -> np.ndarray:
        """The fitted canonical 3D landmarks ``[N, 68, 3]`` in model units."""
        with torch.no_grad():
            points = _model().landmarks_3d(torch.from_numpy(self.identity), torch.from_numpy(self.expression))
        return points.numpy()


def euler_from_rotation(rotation: Tensor) -> Tensor:
    """``[..., 3, 3]`` rotation -> ``[..., 3]`` (yaw, pitch, roll) degrees, the inverse of ``rotation_matrix``.

    With ``R = Rz(roll) Ry(yaw) Rx(pitch)``: ``R[2,0] = -sin(yaw)``, ``R[2,1:] = cos(yaw) (sin, cos)(pitch)``
    and ``R[:2,0] = cos(yaw) (cos, sin)(roll)``; unique for ``|yaw| < 90``.
    """
    yaw = torch.asin((-rotation[..., 2, 0]).clamp(-1.0, 1.0))
    pitch = torch.atan2(rotation[..., 2, 1], rotation[..., 2, 2])
    roll = torch.atan2(rotation[..., 1, 0], rotation[..., 0, 0])
    return torch.stack([yaw, pitch, roll], -1) * (180.0 / math.pi)


def _initial_camera(observed: Tensor, mean: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Closed-form affine-camera fit: ``observed [N, 68, 2]``, ``mean [68, 3]`` -> pose, log-scale, translation."""
    design = torch.cat([mean, torch.ones_like(mean[:, :1])], 1)  # [68, 4]
    solution = torch.linalg.lstsq(design.expand(observed.shape[0], -1, -1), observed).solution  # [N, 4, 2]
    affine = solution[:, :3].transpose(1, 2)  # [N, 2, 3]
    u, s, vh = torch.linalg.svd(affine, full_matrices=False)
    rows = u @ vh  # the nearest pair of orthonormal rows
    rotation = torch.cat([rows, torch.linalg.cross(rows[:, 0], rows[:, 1])[:, None]], 1)
    return euler_from_rotation(rotation), s.mean(-1).log(), solution[:, 3]


def fit_pose(
    landmarks: np.ndarray | Tensor,
    fit_shape: bool = True,
    iterations: int = 60,
    weights: np.ndarray | None = None,
    landmark_sigma: float = LANDMARK_SIGMA,
) -> PoseFit:
    """Fit pose (and shape) of the 3D face model to 68 landmarks in pixels.

    Args:
        landmarks: ``[N, 68, 2]`` or ``[68, 2]`` (x, y) pixel coordinates (any consistent isotropic unit).
        fit_shape: also fit identity and expression coefficients (recommended, see the module docstring).
        iterations: Levenberg-Marquardt steps (converges in ~10-20 on real detections).
        weights: optional ``[68]`` per-landmark weights (e.g. lower for the jaw contour).
        landmark_sigma: assumed landmark noise (fraction of the face's RMS radius) against the shape priors.
            Weak perspective cannot separate yaw/pitch from the face's depth in one view, so the priors
            decide that trade-off: lower it for exact landmarks (synthetic ground truth).

    Returns:
        :class:`PoseFit` with a leading dimension ``N`` (1 for a single ``[68, 2]`` input).
    """
    # One intra-op thread: the tensors are tiny (<= a few thousand faces x 68 points), threads gain nothing,
    # and OpenMP spin-waiting on an oversubscribed CPU made the same fit 30x slower (0.7 s vs 24 s, 48 faces).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit_pose(landmarks, fit_shape, iterations, weights, landmark_sigma)
    finally:
        torch.set_num_threads(threads)


def _fit_pose(landmarks: np.ndarray | Tensor, fit_shape: bool, iterations: int, weights: np.ndarray | None,
              landmark_sigma: float) -> PoseFit:
    """:func:`fit_pose` without the thread handling."""
    observed = torch.as_tensor(np.asarray(landmarks, dtype=np.float64))
    if observed.ndim == 2:
        observed = observed[None]
    if observed.ndim != 3 or observed.shape[1:] != (NUM_LANDMARKS, 2):
        raise ValueError(f"expected [N, 68, 2] landmarks, got {tuple(observed.shape)}")
    model = _model()
    mean = model.mean_shape.double()
    id_basis, ex_basis = model.identity_basis.double(), model.expression_basis.double()
    n_id, n_ex = (id_basis.shape[0], ex_basis.shape[0]) if fit_shape else (0, 0)
    point_weights = torch.ones(NUM_LANDMARKS, dtype=torch.float64) if weights is None else torch.as_tensor(
        np.asarray(weights, dtype=np.float64))

    # Normalise each face by centroid and RMS radius: priors and tolerances become size-independent.
    centre = observed.mean(1, keepdim=True)
    radius = (observed - centre).pow(2).sum(-1).mean(-1).sqrt().clamp(min=1e-9)[:, None, None]
    normalised = (observed - centre) / radius

    pose0, log_scale0, translation0 = _initial_camera(normalised, mean)
    zeros = torch.zeros(observed.shape[0], n_id + n_ex, dtype=torch.float64)
    # Angles are optimised in radians so every parameter has a comparable unit-change effect.
    params = torch.cat([pose0 * (math.pi / 180.0), log_scale0[:, None], translation0, zeros], 1)

    def residuals(p: Tensor, target: Tensor) -> Tensor:
        """Parameters ``[..., P]`` and observations ``[..., 68, 2]`` -> stacked residuals ``[..., R]``."""
        identity, expression = p[..., 6:6 + n_id], p[..., 6 + n_id:]
        shape = model.landmarks_3d(identity, expression) if fit_shape else mean
        projected = model.project(shape, p[..., :3] * (180.0 / math.pi), p[..., 4:6], p[..., 3].exp())
        fit = ((projected - target) * point_weights[:, None]).flatten(-2) / landmark_sigma
        return torch.cat([fit, identity, EXPRESSION_PRIOR * expression], -1) if fit_shape else fit

    def jacobian(p: Tensor, target: Tensor) -> Tensor:
        """Central differences ``[N, R, P]``: all 2P perturbed models in one batched call (the model takes
        arbitrary leading dimensions), far cheaper than per-sample autodiff at this size; float64 keeps
        the truncation error negligible."""
        step = 1e-6
        offsets = torch.eye(p.shape[-1], dtype=p.dtype) * step  # [P, P]
        plus = residuals(p[:, None] + offsets, target[:, None])
        minus = residuals(p[:, None] - offsets, target[:, None])
        return ((plus - minus) / (2 * step)).transpose(1, 2)

    damping = torch.full((observed.shape[0],), 1e-3, dtype=torch.float64)
    r = residuals(params, normalised)
    cost = r.pow(2).sum(-1)
    eye = torch.eye(params.shape[1], dtype=torch.float64)
    for _ in range(iterations):
        j = jacobian(params, normalised)
        jtj = j.transpose(1, 2) @ j
        diagonal = torch.diagonal(jtj, dim1=1, dim2=2).clamp(min=1e-9)
        system = jtj + damping[:, None, None] * torch.diag_embed(diagonal) + 1e-12 * eye
        step = torch.linalg.solve(system, -(j.transpose(1, 2) @ r[..., None]))[..., 0]
        candidate = params + step
        if fit_shape:
            # Projected step: expression coefficients live in [0, 1] like the model's blendshapes.
            candidate[:, 6 + n_id:] = candidate[:, 6 + n_id:].clamp(0.0, 1.0)
        new_r = residuals(candidate, normalised)
        new_cost = new_r.pow(2).sum(-1)
        better = new_cost < cost
        converged = (cost - new_cost).abs() <= 1e-10 * cost.clamp(min=1e-12)
        params = torch.where(better[:, None], candidate, params)
        r = torch.where(better[:, None], new_r, r)
        cost = torch.where(better, new_cost, cost)
        damping = torch.where(better, damping * 0.3, damping * 10.0).clamp(1e-9, 1e9)
        if bool(converged.all()):
            break

    identity, expression = params[:, 6:6 + n_id], params[:, 6 + n_id:]
    shape = model.landmarks_3d(identity, expression) if fit_shape else mean.expand(observed.shape[0], -1, -1)
    pose = params[:, :3] * (180.0 / math.pi)
    # Re-express the angles through the rotation matrix: wraps them into their canonical ranges.
    pose = euler_from_rotation(model.rotation_matrix(pose))
    scale = params[:, 3].exp()
    projected = model.project(shape, pose, params[:, 4:6], scale)
    rms = ((projected - normalised).pow(2).sum(-1).mean(-1).sqrt() * radius[:, 0, 0])
    full_id = identity if fit_shape else torch.zeros(observed.shape[0], id_basis.shape[0], dtype=torch.float64)
    full_ex = expression if fit_shape else torch.zeros(observed.shape[0], ex_basis.shape[0], dtype=torch.float64)
    return PoseFit(
        pose=pose.numpy(),
        scale=(scale * radius[:, 0, 0]).numpy(),
        translation=(params[:, 4:6] * radius[:, 0] + centre[:, 0]).numpy(),
        identity=full_id.numpy(),
        expression=full_ex.numpy(),
        rms_error=rms.numpy(),
    )


def estimate_head_pose(landmarks: np.ndarray | Tensor, fit_shape: bool = True) -> np.ndarray:
    """``[N, 68, 2]`` (or ``[68, 2]``) pixel landmarks -> ``[N, 3]`` (yaw, pitch, roll) degrees."""
    return fit_pose(landmarks, fit_shape=fit_shape).pose


BACKEND = "68-landmark weak-perspective fit of the reenact 3D face model (pose + identity + expression, LM)"

# ----------------------------------------------------------------------------- MediaPipe transformation matrix

#: Change of basis between MediaPipe's metric frame (x right, y up, z toward the viewer, OpenGL style) and
#: the canonical frame of :mod:`reenact.face.model3d` (x right, y down, z toward the camera): flip y.
_FLIP_Y = np.diag([1.0, -1.0, 1.0])


def pose_from_transformation_matrix(matrix: np.ndarray) -> np.ndarray:
    """MediaPipe facial transformation matrix ``[..., 4, 4]`` -> ``[..., 3]`` (yaw, pitch, roll) degrees.

    The matrix maps MediaPipe's canonical face model (frontal, facing the camera: identity rotation) to the
    detected face in a frame with x right, **y up**, z toward the viewer. The project's frame differs by
    the sign of y, so the same head rotation reads ``R = F @ M[:3, :3] @ F`` with ``F = diag(1, -1, 1)``,
    and the angles follow :func:`reenact.face.model3d.rotation_matrix` (``R = Rz(roll) Ry(yaw) Rx(pitch)``:
    positive yaw turns the nose to the image right, positive pitch looks up, positive roll tilts clockwise
    in the image), as :func:`euler_from_rotation` reads them. The 3x3 block is first projected onto the
    nearest rotation (SVD), which removes any uniform scale of MediaPipe's Procrustes fit. Translation is
    ignored. Inverse: ``M[:3, :3] = F @ rotation_matrix(pose) @ F``.
    """
    block = np.asarray(matrix, dtype=np.float64)[..., :3, :3]
    u, _, vh = np.linalg.svd(block)
    rotation = u @ vh
    if np.any(np.linalg.det(rotation) < 0):
        raise ValueError("the transformation matrix contains a reflection, not a rotation")
    return euler_from_rotation(torch.from_numpy(_FLIP_Y @ rotation @ _FLIP_Y)).numpy()


def transformation_matrix_from_pose(pose: np.ndarray, translation: np.ndarray | None = None) -> np.ndarray:
    """``[..., 3]`` (yaw, pitch, roll) degrees -> ``[..., 4, 4]`` MediaPipe-style matrix (inverse of
    :func:`pose_from_transformation_matrix`; for tests and synthetic data)."""
    pose = np.asarray(pose, dtype=np.float64)
    out = np.zeros((*pose.shape[:-1], 4, 4))
    out[..., :3, :3] = _FLIP_Y @ rotation_matrix(torch.from_numpy(pose)).numpy() @ _FLIP_Y
    out[..., :3, 3] = 0.0 if translation is None else translation
    out[..., 3, 3] = 1.0
    return out


# ----------------------------------------------------------------------------------------- backends by name


class PoseBackend(FaceBackend):
    """Head pose ``[N, 3]`` (yaw, pitch, roll degrees; NaN rows where no face) of uint8 RGB frames."""

    name: ClassVar[str]
    #: Whether :meth:`estimate` needs the 68 landmarks of a landmark backend.
    needs_landmarks: ClassVar[bool] = True

    def estimate(self, frames: np.ndarray, landmarks: Sequence[np.ndarray | None]) -> np.ndarray:
        raise NotImplementedError


class LandmarkFitPose(PoseBackend):
    """:func:`fit_pose` of the shared 3D face model to the 68 landmarks of any landmark backend (default)."""

    name = "landmarks-3dmm"

    def describe(self) -> str:
        return BACKEND

    def estimate(self, frames: np.ndarray, landmarks: Sequence[np.ndarray | None]) -> np.ndarray:
        out = np.full((len(landmarks), 3), np.nan)
        index = [i for i, points in enumerate(landmarks) if points is not None]
        if index:
            out[index] = fit_pose(np.stack([landmarks[i] for i in index])).pose
        return out


class MediapipePose(PoseBackend):
    """Head pose from MediaPipe FaceLandmarker's facial transformation matrix (needs the ``.task`` file of
    :class:`reenact.face.landmarks.MediapipeLandmarks`: ``model_path=`` or ``$REENACT_MEDIAPIPE_TASK``)."""

    name = "mediapipe"
    needs_landmarks = False
    _lazy_attributes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, model_path: str | None = None) -> None:
        from reenact.face.landmarks import MediapipeLandmarks

        self.landmarker = MediapipeLandmarks(model_path=model_path)

    def describe(self) -> str:
        return f"{self.landmarker.describe().split(',')[0]}: facial transformation matrix -> Euler angles"

    def unavailable_reason(self) -> str | None:
        return self.landmarker.unavailable_reason()

    def estimate(self, frames: np.ndarray, landmarks: Sequence[np.ndarray | None] | None = None) -> np.ndarray:
        out = np.full((len(frames), 3), np.nan)
        for i, frame in enumerate(frames):
            analysis = self.landmarker.analyse(frame)
            if analysis is not None and analysis["transform"] is not None:
                out[i] = pose_from_transformation_matrix(analysis["transform"])
        return out


POSE_BACKENDS: dict[str, type[PoseBackend]] = {cls.name: cls for cls in (LandmarkFitPose, MediapipePose)}


@lru_cache(maxsize=8)
def get_pose_backend(name: str = "landmarks-3dmm", **kwargs: Any) -> PoseBackend:
    """The head-pose backend ``name`` (``KeyError`` listing the known names for an unknown one)."""
    try:
        cls = POSE_BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown pose backend {name!r}; known: {', '.join(POSE_BACKENDS)}") from None
    return cls(**kwargs)


__all__ = [
    "BACKEND", "LANDMARK_SIGMA", "POSE_BACKENDS", "LandmarkFitPose", "MediapipePose", "PoseBackend", "PoseFit",
    "estimate_head_pose", "euler_from_rotation", "fit_pose", "get_pose_backend", "pose_from_transformation_matrix",
    "transformation_matrix_from_pose",
]
