"""The data of :class:`~reenact.face.model3d.FaceModel3D`, in millimetres on the iBUG 300-W 68-point layout
(the layout and axis conventions are documented in :mod:`reenact.face.model3d`): the symmetric mean shape, the
identity basis (named, one standard deviation each) and the seven expression blendshapes."""

from __future__ import annotations

import numpy as np

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


def mean_shape_mm() -> np.ndarray:
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


def identity_basis_mm(mean: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
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
LID_PAIRS = {"right": ((37, 41), (38, 40)), "left": ((43, 47), (44, 46))}


def expression_basis_mm(mean: np.ndarray) -> np.ndarray:
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
