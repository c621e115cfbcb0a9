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

NUM_LANDMARKS = 68

#: Landmark index ranges of the iBUG 68-point scheme (subject's own left/right).
LANDMARK_GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "right_brow": tuple(range(17, 22)),
    "left_brow": tuple(range(22, 27)),
    "nose_bridge": tuple(range(27, 31)),
    "nostrils": tuple(range(31, 36)),
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "outer_lip": tuple(range(48, 60)),
    "inner_lip": tuple(range(60, 68)),
}


def _mirror_index(i: int) -> int:
    """Index of the landmark mirrored across the face midline (iBUG numbering)."""
    if i <= 16:
        return 16 - i
    if i <= 26:
        return 43 - i
    if i <= 30:
        return i
    if i <= 35:
        return 66 - i
    if i <= 39:
        return 81 - i
    if i <= 41:
        return 87 - i
    if i <= 45:
        return 81 - i
    if i <= 47:
        return 87 - i
    if i <= 54:
        return 102 - i
    if i <= 59:
        return 114 - i
    if i <= 64:
        return 124 - i
    return 132 - i


#: ``MIRROR_68[i]`` is the landmark that ``i`` becomes when the face is mirrored left-right.
MIRROR_68: tuple[int, ...] = tuple(_mirror_index(i) for i in range(NUM_LANDMARKS))

# The subject's right half and the midline of an average adult face in millimetres: x toward the image
# right, y down from the eye-corner line, z toward the camera with the nose tip at 0. Proportions follow
# anthropometric averages (face width at the ears 140 mm, eye fissure 25 mm, inner canthi 34 mm apart,
# nose 50 mm from nasion to subnasale, mouth 50 mm wide, eye line to chin 114 mm); depths put the eye
# corners 3-4 cm and the face outline near the ears 7-8 cm behind the nose tip. The other half is mirrored.
_HALF_FACE_MM: dict[int, tuple[float, float, float]] = {
    # jaw contour: ear level down to the chin
    0: (-70.0, 5.0, -76.0),
    1: (-69.0, 23.5, -75.0),
    2: (-67.0, 41.5, -71.0),
    3: (-63.0, 58.5, -65.0),
    4: (-56.0, 75.0, -57.0),
    5: (-46.0, 89.0, -47.0),
    6: (-33.0, 101.5, -36.0),
    7: (-17.0, 110.5, -28.0),
    8: (0.0, 114.0, -24.0),
    # right brow, outer to inner; the arch peaks over the iris
    17: (-57.0, -13.0, -45.0),
    18: (-48.0, -21.0, -36.0),
    19: (-37.0, -24.0, -28.0),
    20: (-25.0, -22.0, -22.0),
    21: (-13.0, -17.0, -20.0),
    # nose bridge, nasion to tip
    27: (0.0, -2.0, -21.0),
    28: (0.0, 10.0, -14.0),
    29: (0.0, 22.0, -7.0),
    30: (0.0, 33.0, 0.0),
    # nose base
    31: (-11.5, 43.0, -17.0),
    32: (-7.0, 46.0, -12.0),
    33: (0.0, 48.0, -10.0),
    # right eye: the outer corner sits slightly higher and further back than the inner one
    36: (-42.0, 1.0, -42.0),
    37: (-35.0, -5.0, -34.0),
    38: (-25.0, -5.5, -31.0),
    39: (-17.0, 2.0, -32.0),
    40: (-25.0, 5.0, -32.0),
    41: (-35.0, 5.0, -34.0),
    # outer lip
    48: (-25.0, 67.5, -33.0),
    49: (-16.0, 61.0, -20.0),
    50: (-6.0, 58.0, -13.0),
    51: (0.0, 59.0, -12.0),
    59: (-17.0, 73.5, -22.0),
    58: (-8.0, 78.0, -16.0),
    57: (0.0, 79.0, -15.0),
    # inner lip, a closed mouth: the two inner contours nearly touch
    60: (-21.0, 67.5, -30.0),
    61: (-8.0, 65.5, -16.0),
    62: (0.0, 65.5, -15.0),
    67: (-8.0, 66.5, -17.0),
    66: (0.0, 66.5, -16.0),
}

#: Millimetres per model unit (half the average face width).
MM_PER_UNIT = 70.0


def _mean_shape_mm() -> np.ndarray:
    """``[68, 3]`` float64: the mean face in millimetres, mirrored from ``_HALF_FACE_MM``."""
    points = np.full((NUM_LANDMARKS, 3), np.nan)
    for index, xyz in _HALF_FACE_MM.items():
        points[index] = xyz
        points[MIRROR_68[index]] = (-xyz[0], xyz[1], xyz[2])
    if np.isnan(points).any():
        raise AssertionError("mean shape table does not cover all 68 landmarks")
    return points


def _signed_x(points: np.ndarray) -> np.ndarray:
    return np.sign(points[:, 0])


def _zeros() -> np.ndarray:
    return np.zeros((NUM_LANDMARKS, 3))


def _identity_basis_mm(mean: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Identity deformation components, one standard deviation each, in millimetres.

    Returns (names, ``[I, 68, 3]``). Each component is a smooth, symmetric displacement of one
    anthropometric trait, sized after the spread of adult faces (a few millimetres to ~8%).
    """
    x, y, z = mean[:, 0], mean[:, 1], mean[:, 2]
    jaw = np.arange(0, 17)
    brows = np.arange(17, 27)
    eyes = np.arange(36, 48)
    nose_base = np.arange(31, 36)
    mouth = np.arange(48, 68)
    components: dict[str, np.ndarray] = {}

    d = _zeros()
    d[jaw, 0] = 0.06 * x[jaw]
    d[[17, 26], 0] = 0.03 * x[[17, 26]]
    components["face_width"] = d

    d = _zeros()
    below = np.clip(y, 0.0, None)
    d[:, 1] = 0.06 * below * (y > 40)  # only the lower face lengthens; the eye region stays put
    d[jaw, 1] = 0.06 * below[jaw]
    components["face_length"] = d

    d = _zeros()
    weight = np.clip((y - 30.0) / 70.0, 0.0, 1.0)
    d[jaw, 0] = 0.09 * x[jaw] * weight[jaw]
    components["jaw_width"] = d

    d = _zeros()
    chin_weight = {6: 0.4, 7: 0.8, 8: 1.0, 9: 0.8, 10: 0.4}
    for index, w in chin_weight.items():
        d[index, 1] = 5.0 * w
    components["chin_length"] = d

    d = _zeros()
    for index, w in chin_weight.items():
        d[index, 2] = 5.0 * w
    components["chin_protrusion"] = d

    d = _zeros()
    d[eyes, 0] = 2.5 * _signed_x(mean)[eyes]
    d[brows, 0] = 1.5 * _signed_x(mean)[brows]
    components["eye_spacing"] = d

    d = _zeros()
    for group in (np.arange(36, 42), np.arange(42, 48)):
        centre = mean[group].mean(axis=0)
        d[group, :2] = 0.11 * (mean[group, :2] - centre[:2])
    components["eye_size"] = d

    d = _zeros()
    d[[36, 45], 1] = -1.8
    d[[37, 44, 41, 46], 1] = -0.8
    components["eye_tilt"] = d

    d = _zeros()
    d[28, 1], d[29, 1], d[30, 1] = 1.0, 2.5, 4.0
    d[nose_base, 1] = 4.0
    components["nose_length"] = d

    d = _zeros()
    d[[31, 35], 0] = 3.0 * _signed_x(mean)[[31, 35]]
    d[[32, 34], 0] = 1.5 * _signed_x(mean)[[32, 34]]
    components["nose_width"] = d

    d = _zeros()
    d[28, 2], d[29, 2], d[30, 2] = 1.5, 3.0, 4.5
    d[nose_base, 2] = (2.0, 3.0, 3.5, 3.0, 2.0)
    components["nose_protrusion"] = d

    d = _zeros()
    d[mouth, 0] = 0.08 * x[mouth]
    components["mouth_width"] = d

    d = _zeros()
    d[[49, 50, 51, 52, 53], 1] = (-1.5, -2.2, -2.2, -2.2, -1.5)
    d[[55, 56, 57, 58, 59], 1] = (1.8, 2.6, 2.8, 2.6, 1.8)
    components["lip_thickness"] = d

    d = _zeros()
    d[mouth, 1] = 3.5
    components["mouth_height"] = d

    d = _zeros()
    d[brows, 1] = -3.5
    components["brow_height"] = d

    d = _zeros()
    d[:, 2] = 0.1 * (z - z.mean())
    components["face_depth"] = d

    names = tuple(components)
    return names, np.stack([components[name] for name in names])


#: Expression coefficients, each in ``[0, 1]``.
EXPRESSION_NAMES: tuple[str, ...] = (
    "jaw_open",
    "smile",
    "blink_left",
    "blink_right",
    "brow_raise",
    "brow_lower",
    "lip_pucker",
)

# Upper-lid landmark, the lower-lid landmark below it, per eye (subject's sides).
_LID_PAIRS = {"right": ((37, 41), (38, 40)), "left": ((43, 47), (44, 46))}


def _expression_basis_mm(mean: np.ndarray) -> np.ndarray:
    """Linear expression deltas ``[E, 68, 3]`` in millimetres at coefficient 1.

    The blink entries stay zero: blinks are applied as a lid interpolation in
    :meth:`FaceModel3D.landmarks_3d`.
    """
    side = _signed_x(mean)
    basis = np.zeros((len(EXPRESSION_NAMES), NUM_LANDMARKS, 3))

    d = basis[EXPRESSION_NAMES.index("jaw_open")]
    # The mandible swings down and slightly back; points far from the chin follow less.
    jaw_weight = (0.0, 0.05, 0.18, 0.38, 0.6, 0.8, 0.93, 1.0, 1.0)
    for index, w in enumerate(jaw_weight):
        for j in {index, 16 - index}:
            d[j] = (0.0, 26.0 * w, -8.0 * w)
    d[[55, 56, 57, 58, 59]] = [(0.0, 22.0 * w, -6.0 * w) for w in (0.7, 0.85, 0.9, 0.85, 0.7)]
    d[[65, 66, 67]] = [(0.0, 22.0 * w, -6.0 * w) for w in (0.85, 0.9, 0.85)]
    d[[48, 54, 60, 64], 1] = 9.0
    d[[48, 54, 60, 64], 0] = -2.5 * side[[48, 54, 60, 64]]
    d[[61, 62, 63], 1] = -1.5
    d[[49, 50, 51, 52, 53], 1] = -0.8

    d = basis[EXPRESSION_NAMES.index("smile")]
    d[[48, 54]] = np.stack([6.0 * side[[48, 54]], [-5.0, -5.0], [-3.0, -3.0]], axis=1)
    d[[60, 64]] = np.stack([5.0 * side[[60, 64]], [-4.5, -4.5], [-3.0, -3.0]], axis=1)
    d[[49, 53], 0], d[[49, 53], 1] = 2.0 * side[[49, 53]], -2.0
    d[[59, 55], 0], d[[59, 55], 1] = 3.0 * side[[59, 55]], -2.5
    d[[58, 56], 1] = -1.0
    d[[61, 63, 65, 67], 0], d[[61, 63, 65, 67], 1] = 2.0 * side[[61, 63, 65, 67]], -1.0
    d[[40, 41, 46, 47], 1] = -1.2  # cheeks push the lower lids up (Duchenne smile)
    d[[4, 5, 11, 12], 0] = 1.0 * side[[4, 5, 11, 12]]

    d = basis[EXPRESSION_NAMES.index("brow_raise")]
    d[[17, 18, 19, 20, 21]] = [(0.0, -dy, 0.0) for dy in (5.0, 7.5, 8.0, 7.5, 6.0)]
    d[[26, 25, 24, 23, 22]] = d[[17, 18, 19, 20, 21]]
    d[[37, 38, 43, 44], 1] = -1.0

    d = basis[EXPRESSION_NAMES.index("brow_lower")]
    lower = {17: (0.0, 1.5), 18: (0.5, 2.5), 19: (1.0, 3.5), 20: (2.0, 4.5), 21: (3.0, 5.0)}
    for index, (inward, down) in lower.items():
        d[index] = (inward, down, 0.0)
        d[MIRROR_68[index]] = (-inward, down, 0.0)
    d[[37, 38, 43, 44], 1] = 1.0

    d = basis[EXPRESSION_NAMES.index("lip_pucker")]
    mouth = np.arange(48, 68)
    centre_y = mean[[51, 57], 1].mean()
    forward = 1.0 - np.abs(mean[mouth, 0]) / np.abs(mean[mouth, 0]).max()
    d[mouth, 0] = -0.35 * mean[mouth, 0]
    d[mouth, 1] = -0.15 * (mean[mouth, 1] - centre_y)
    d[mouth, 2] = 4.0 + 6.0 * forward
    return basis


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
    """

    num_landmarks: int = NUM_LANDMARKS
    expression_names: tuple[str, ...] = EXPRESSION_NAMES

    mean_shape: Tensor  # [68, 3]
    identity_basis: Tensor  # [I, 68, 3]
    expression_basis: Tensor  # [E, 68, 3]

    def __init__(self) -> None:
        super().__init__()
        mean_mm = _mean_shape_mm()
        names, identity_mm = _identity_basis_mm(mean_mm)
        expression_mm = _expression_basis_mm(mean_mm)
        centroid = mean_mm.mean(axis=0)
        self.identity_names: tuple[str, ...] = names
        self.register_buffer(
            "mean_shape", torch.from_numpy((mean_mm - centroid) / MM_PER_UNIT).float(), persistent=False
        )
        self.register_buffer("identity_basis", torch.from_numpy(identity_mm / MM_PER_UNIT).float(), persistent=False)
        self.register_buffer(
            "expression_basis", torch.from_numpy(expression_mm / MM_PER_UNIT).float(), persistent=False
        )
        self._blink_index = {
            "right": EXPRESSION_NAMES.index("blink_right"),
            "left": EXPRESSION_NAMES.index("blink_left"),
        }

    @property
    def identity_dim(self) -> int:
        return int(self.identity_basis.shape[0])

    @property
    def expression_dim(self) -> int:
        return len(self.expression_names)

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
        # Blinks close each eye onto a line 80% of the way down its own lid opening, whatever the
        # identity's eye size, so they cannot be a fixed linear delta.
        upper_index, lower_index, weight_index = [], [], []
        for side, pairs in _LID_PAIRS.items():
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
