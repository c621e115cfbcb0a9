"""A parametric 3D landmark face model on the iBUG 300-W 68-point layout.

The 68 landmarks follow the iBUG 300-W annotation scheme (Sagonas et al., "300 Faces in-the-Wild
Challenge", ICCV-W 2013), the layout dlib's ``shape_predictor_68_face_landmarks`` predicts:

====== ===========================================================================
0-16   jaw contour, from the subject's right ear (image left) over the chin (8)
17-21  subject's right eyebrow (image left), outer end (17) to inner end (21)
22-26  subject's left eyebrow, inner end (22) to outer end (26)
27-30  nose bridge, nasion (27) to nose tip (30)
31-35  nostrils / nose base, subject's right (31) over subnasale (33) to left (35)
36-41  subject's right eye: outer corner 36, upper lid 37-38, inner corner 39, lower lid 40-41
42-47  subject's left eye: inner corner 42, upper lid 43-44, outer corner 45, lower lid 46-47
48-59  outer lip contour: right corner 48, upper lip 49-53 (51 = top centre), left corner 54,
       lower lip 55-59 (57 = bottom centre)
60-67  inner lip contour: right corner 60, upper 61-63, left corner 64, lower 65-67
====== ===========================================================================

"Left" and "right" always mean the subject's own sides, as in iBUG; on an unmirrored frontal image the
subject's right eye (36-41) appears on the image's left.

Conventions (everything below is what a PnP solver needs to invert :meth:`FaceModel3D.project`):

* **Canonical 3D face coordinates.** x points to the image right (the subject's left), y points down,
  z points toward the camera (out of the face). The unit is half the face width: jaw points 0 and 16 of
  the mean shape are 2 units apart (an average adult face, 140 mm, so 1 unit is about 70 mm). The
  origin is the centroid of the 68 mean-shape landmarks, which sits on the midline at about the height of
  the nose tip and about 3 cm behind it; rotations turn the face about this point.
* **Rotation.** ``pose = (yaw, pitch, roll)`` in degrees and ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``,
  acting on column vectors (``R @ X``); pitch is applied to the face first, roll last. With this
  axis frame:

  - ``Rx(p) = [[1, 0, 0], [0, cos p, -sin p], [0, sin p, cos p]]``: positive **pitch** looks up, the
    nose tip moves up in the image (toward -y) and the chin comes toward the camera.
  - ``Ry(y) = [[cos y, 0, sin y], [0, 1, 0], [-sin y, 0, cos y]]``: positive **yaw** turns the face
    toward the image right (the subject turns to their own left): the nose tip moves toward +x.
  - ``Rz(r) = [[cos r, -sin r, 0], [sin r, cos r, 0], [0, 0, 1]]``: positive **roll** rotates the face
    clockwise as seen in the image (y down), i.e. the head tilts toward the subject's left shoulder
    (the image-right one); the subject's left eye moves down.

* **Projection.** Weak perspective (scaled orthographic) into normalized image coordinates:
  ``x2d = scale * (R @ X)[:2] + translation``. ``scale`` is the on-image size of one model unit
  (half a face width) in normalized units, ``translation`` the image position of the model origin.
  :meth:`FaceModel3D.to_camera` also returns the depth ``scale * (R @ X)[2]`` (larger = closer to the
  camera), which the renderer uses to paint back to front.
* **Normalized image coordinates** span ``[-1, 1]`` from the left edge of the leftmost pixel to the
  right edge of the rightmost one (x right, y down), the ``align_corners=False`` convention of
  ``torch.nn.functional.grid_sample``. Pixel coordinates put the *centre* of pixel ``(i, j)`` at
  ``x = j, y = i``, so the image spans ``[-0.5, W - 0.5]``: ``x_px = (x + 1) * W / 2 - 0.5``
  (:func:`to_pixels` / :func:`to_normalized`). This is the convention of dlib's and OpenCV's
  landmark outputs.

Shape model: ``landmarks_3d = mean_shape + identity @ identity_basis + expression deltas``. Identity
coefficients are in standard deviations of the population (sample ``N(0, 1)``, clipped to about
``±2.5``); expression coefficients lie in ``[0, 1]`` (1 = the full action). All expressions are linear
blendshapes except the blinks, which pull the upper lid toward the lower lid of the identity's own
eye so that ``blink = 1`` closes every eye exactly. Everything is plain differentiable torch and works
for float32/float64 with arbitrary leading batch dimensions.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from reenact.face.shape_data import (
    EXPRESSION_NAMES,
    LANDMARK_GROUPS,
    LID_PAIRS,
    MIRROR_68,
    MM_PER_UNIT,
    NUM_LANDMARKS,
    expression_basis_mm,
    identity_basis_mm,
    mean_shape_mm,
)


def rotation_matrix(pose: Tensor) -> Tensor:
    """``[..., 3]`` (yaw, pitch, roll) in degrees -> ``[..., 3, 3]`` ``R = Rz(roll) @ Ry(yaw) @ Rx(pitch)``.

    See the module docstring for the sign of each angle.
    """
    radians = pose * (math.pi / 180.0)
    yaw, pitch, roll = radians.unbind(-1)
    cy, sy = torch.cos(yaw), torch.sin(yaw)
    cp, sp = torch.cos(pitch), torch.sin(pitch)
    cr, sr = torch.cos(roll), torch.sin(roll)
    # Closed form of Rz(roll) @ Ry(yaw) @ Rx(pitch), written out to keep one fused graph.
    rows = (
        (cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp),
        (sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp),
        (-sy, cy * sp, cy * cp),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _image_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` (square side, or ``(height, width)``) -> ``(height, width)``."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def to_pixels(points: Tensor | np.ndarray, size: int | tuple[int, int]) -> Tensor | np.ndarray:
    """Normalized ``[..., 2]`` (x, y in ``[-1, 1]``) -> pixel coordinates ``[..., 2]``.

    ``size`` is the side of a square image or ``(height, width)``. Pixel centres sit at integer
    coordinates: ``x_px = (x + 1) * W / 2 - 0.5``. Works on torch tensors and numpy arrays alike.
    """
    height, width = _image_size(size)
    half = points.new_tensor([width / 2, height / 2]) if isinstance(points, Tensor) else np.array(
        [width / 2, height / 2], dtype=points.dtype
    )
    return (points + 1.0) * half - 0.5


def to_normalized(points: Tensor | np.ndarray, size: int | tuple[int, int]) -> Tensor | np.ndarray:
    """Pixel coordinates ``[..., 2]`` -> normalized ``[..., 2]``; the inverse of :func:`to_pixels`."""
    height, width = _image_size(size)
    half = points.new_tensor([width / 2, height / 2]) if isinstance(points, Tensor) else np.array(
        [width / 2, height / 2], dtype=points.dtype
    )
    return (points + 0.5) / half - 1.0


class FaceModel3D(torch.nn.Module):
    """Mean shape + identity components + expression blendshapes on the iBUG 68-point layout.

    Holds buffers only (no trainable parameters). Buffers are float32; every method computes in the
    dtype and device of its inputs, so float64 inputs give float64 results.

    Args:
        expression_basis: ``[K, 68, 3]`` linear expression displacements in model units that replace the 7
            blendshapes (a learned or BFM basis, :mod:`reenact.face.expression_basis`); its coefficients are
            signed (standard deviations for a learned basis) and there are no blinks closing onto the lid.
            The basis is then a persistent buffer (it belongs in a checkpoint); ``None``: the blendshapes.
    """

    num_landmarks: int = NUM_LANDMARKS
    expression_names: tuple[str, ...] = EXPRESSION_NAMES

    mean_shape: Tensor  # [68, 3]
    identity_basis: Tensor  # [I, 68, 3]
    expression_basis: Tensor  # [E, 68, 3]

    def __init__(self, expression_basis: Tensor | None = None) -> None:
        super().__init__()
        mean_mm = mean_shape_mm()
        names, identity_mm = identity_basis_mm(mean_mm)
        centroid = mean_mm.mean(axis=0)
        self.identity_names: tuple[str, ...] = names
        self.register_buffer(
            "mean_shape", torch.from_numpy((mean_mm - centroid) / MM_PER_UNIT).float(), persistent=False
        )
        self.register_buffer("identity_basis", torch.from_numpy(identity_mm / MM_PER_UNIT).float(), persistent=False)
        #: True for the 7 named blendshapes (coefficients in [0, 1], blinks), False for a linear basis.
        self.blendshapes = expression_basis is None
        if expression_basis is None:
            expression_mm = expression_basis_mm(mean_mm)
            self.register_buffer(
                "expression_basis", torch.from_numpy(expression_mm / MM_PER_UNIT).float(), persistent=False
            )
        else:
            if expression_basis.ndim != 3 or expression_basis.shape[1:] != (NUM_LANDMARKS, 3):
                raise ValueError(f"expression_basis must be [K, 68, 3], got {tuple(expression_basis.shape)}")
            self.register_buffer("expression_basis", expression_basis.detach().float().clone())
            self.expression_names = tuple(f"expression_{k:02d}" for k in range(expression_basis.shape[0]))
        self._blink_index = {
            "right": EXPRESSION_NAMES.index("blink_right"),
            "left": EXPRESSION_NAMES.index("blink_left"),
        }

    @property
    def identity_dim(self) -> int:
        return int(self.identity_basis.shape[0])

    @property
    def expression_dim(self) -> int:
        return int(self.expression_basis.shape[0])

    def expression_vector(self, **values: float) -> Tensor:
        """``[E]`` float32 expression coefficients from keyword values, e.g. ``jaw_open=0.5``."""
        unknown = set(values) - set(self.expression_names)
        if unknown:
            raise KeyError(f"unknown expressions {sorted(unknown)}; known: {self.expression_names}")
        return torch.tensor([float(values.get(name, 0.0)) for name in self.expression_names])

    def landmarks_3d(self, identity: Tensor, expression: Tensor) -> Tensor:
        """Identity ``[..., I]`` and expression ``[..., E]`` -> canonical 3D landmarks ``[..., 68, 3]``.

        Leading dimensions broadcast against each other.
        """
        dtype = torch.promote_types(identity.dtype, expression.dtype)
        mean = self.mean_shape.to(dtype=dtype, device=identity.device)
        identity = identity.to(dtype)
        expression = expression.to(dtype)
        neutral = mean + torch.einsum("...i,inc->...nc", identity, self.identity_basis.to(mean))
        points = neutral + torch.einsum("...e,enc->...nc", expression, self.expression_basis.to(mean))
        if not self.blendshapes:
            return points
        # Blinks close each eye onto a line 80% of the way down its own lid opening, whatever the
        # identity's eye size, so they cannot be a fixed linear delta.
        upper_index, lower_index, weight_index = [], [], []
        for side, pairs in LID_PAIRS.items():
            for upper, lower in pairs:
                upper_index.append(upper)
                lower_index.append(lower)
                weight_index.append(self._blink_index[side])
        upper_pts = points[..., upper_index, :]
        lower_pts = points[..., lower_index, :]
        closed = 0.8 * lower_pts + 0.2 * upper_pts
        blink = expression[..., weight_index].unsqueeze(-1).clamp(0.0, 1.0)
        new_upper = upper_pts + blink * (closed - upper_pts)
        new_lower = lower_pts + blink * (closed - lower_pts)
        points = points.index_copy(-2, torch.tensor(upper_index, device=points.device), new_upper)
        return points.index_copy(-2, torch.tensor(lower_index, device=points.device), new_lower)

    @staticmethod
    def rotation_matrix(pose: Tensor) -> Tensor:
        """``[..., 3]`` (yaw, pitch, roll) degrees -> ``[..., 3, 3]``; see :func:`rotation_matrix`."""
        return rotation_matrix(pose)

    def to_camera(self, points: Tensor, pose: Tensor, translation: Tensor, scale: Tensor) -> Tensor:
        """Canonical points ``[..., N, 3]`` -> ``[..., N, 3]``: normalized image x, y and depth.

        ``pose [..., 3]`` degrees, ``translation [..., 2]`` normalized, ``scale [...]``. Output
        ``x, y = scale * (R @ X)[:2] + translation`` and ``depth = scale * (R @ X)[2]`` (toward the
        camera). Works for any number of points N, not only the 68 landmarks.
        """
        dtype = torch.promote_types(torch.promote_types(points.dtype, pose.dtype), translation.dtype)
        rotation = rotation_matrix(pose.to(dtype))
        rotated = torch.einsum("...ij,...nj->...ni", rotation, points.to(dtype))
        scale = torch.as_tensor(scale, dtype=dtype, device=points.device)[..., None, None]
        offset = torch.nn.functional.pad(translation.to(dtype), (0, 1))[..., None, :]
        return scale * rotated + offset

    def project(self, points: Tensor, pose: Tensor, translation: Tensor, scale: Tensor) -> Tensor:
        """Weak-perspective projection ``[..., N, 3]`` -> normalized image coordinates ``[..., N, 2]``.

        ``x2d = scale * (R(pose) @ X)[:2] + translation`` with ``pose [..., 3]`` (yaw, pitch, roll
        degrees), ``translation [..., 2]`` and ``scale [...]``.
        """
        return self.to_camera(points, pose, translation, scale)[..., :2]

    def forward(
        self, identity: Tensor, expression: Tensor, pose: Tensor, translation: Tensor, scale: Tensor
    ) -> Tensor:
        """Shape and projection in one call -> normalized 2D landmarks ``[..., 68, 2]``."""
        return self.project(self.landmarks_3d(identity, expression), pose, translation, scale)

    def landmarks_2d_numpy(
        self,
        identity: np.ndarray,
        expression: np.ndarray,
        pose: np.ndarray,
        translation: np.ndarray,
        scale: np.ndarray | float,
    ) -> np.ndarray:
        """Numpy convenience around :meth:`forward` (float64 in, float64 normalized ``[..., 68, 2]`` out)."""
        with torch.no_grad():
            result = self.forward(
                torch.as_tensor(np.asarray(identity, dtype=np.float64)),
                torch.as_tensor(np.asarray(expression, dtype=np.float64)),
                torch.as_tensor(np.asarray(pose, dtype=np.float64)),
                torch.as_tensor(np.asarray(translation, dtype=np.float64)),
                torch.as_tensor(np.asarray(scale, dtype=np.float64)),
            )
        return result.numpy()


__all__ = ["EXPRESSION_NAMES", "LANDMARK_GROUPS", "MIRROR_68", "MM_PER_UNIT", "NUM_LANDMARKS", "FaceModel3D",
           "rotation_matrix", "to_normalized", "to_pixels"]
