"""Synthetic talking heads with exact ground truth: the project's embedded default dataset.

Every identity, clip trajectory and frame is a pure function of ``(seed, identity index, clip index)``:
the same arguments give byte-identical frames and annotations on any machine with the same numpy/cv2.

* **Identities** (:func:`sample_identity`) draw :class:`~reenact.face.model3d.FaceModel3D` identity
  coefficients (``N(0, 1)`` clipped to ±2.5), a skin tone, a hair colour/style/volume/hairline, iris,
  brow, lip and clothing colours, a light direction and a background (two-colour gradient with an
  optional stripe, blob or check pattern). Any number of identities can be drawn.
* **Trajectories** (:func:`sample_trajectory`) are smooth but really move: pose = a per-clip base pose
  plus one large oscillation per axis (a head turn through about ±25° yaw within a 64-frame clip, nods,
  tilts; :data:`_POSE_SWING`, :data:`_POSE_RATE`) and a small jitter, clipped to yaw ±30°, pitch ±20°,
  roll ±15° (:data:`POSE_LIMITS`); translation (±:data:`TRANSLATION_LIMIT`) and scale
  (:data:`SCALE_RANGE`) drift; ``jaw_open`` follows a syllable train at 3.5-7 syllables per second
  with pauses, ``lip_pucker`` rounds some syllables, blinks are 150-300 ms events (~0.35/s, sometimes
  a wink), smiles and brow movements drift slowly or come as short events.
* **Rendering** (:func:`render_video`) paints each frame with numpy + OpenCV at ``supersample`` times
  the output size and area-downsamples it: background, torso and neck, hair behind the head, ears,
  the head (skull and face silhouettes, Lambert shading from ray-cast ellipsoids lit by the identity's
  light), then eyes, brows, a faceted nose and the mouth in back-to-front depth order, soft
  ambient-occlusion shadows (eye sockets, nose sides, under the nose, lip and chin, nasolabial folds)
  and the front hair on top. All geometry is the 3D model's landmarks (plus a few auxiliary points
  attached to them) projected with its weak-perspective camera, so the ground-truth landmarks are
  exactly the ones the features are drawn from.

Detection check (the renders must read as faces to a real face detector), measured with
:func:`measure_dlib` (60 identities x 10 frames spread over 32-frame clips whose poses cover the whole
range; dlib's HOG ``get_frontal_face_detector()`` with upsample 1, then its 68-point predictor)::

    python -c "from reenact.data.synthetic import measure_dlib; print(measure_dlib(size=256))"

=========================== ========= ============================ ===============================
rendered at                 detected  mean 68-point error (256 px)  NME (inter-ocular distance)
=========================== ========= ============================ ===============================
256 px                      600 / 600 2.26 px                       5.6%
128 px, upsampled to 256    600 / 600 2.48 px                       6.1%
64 px, upsampled to 256     300 / 300 3.05 px                       7.4%
=========================== ========= ============================ ===============================

Dataset layout written by :func:`generate_dataset` (FOMM style)::

    root/train/id0000#clip00.mp4        (or a frame folder root/train/id0000#clip00/0000.png ...)
    root/test/id0016#clip00.mp4         (identities are disjoint between train and test)
    root/annotations/train/id0000#clip00.npz
    root/annotations/README.md
    root/meta.json                      (written last and atomically: marks a complete dataset)

Every annotation ``.npz`` holds (F frames, E expressions, I identity components):

* ``landmarks`` float32 ``[F, 68, 2]``: iBUG 68 landmarks in pixels of the written frames, (x, y),
  pixel centres at integer coordinates (the image spans ``[-0.5, size - 0.5]``);
* ``pose`` float32 ``[F, 3]``: yaw, pitch, roll in degrees (conventions: :mod:`reenact.face.model3d`);
* ``translation`` float32 ``[F, 2]`` and ``scale`` float32 ``[F]``: the weak-perspective camera in
  normalized image units (``[-1, 1]`` across the image);
* ``expression`` float32 ``[F, E]`` in the order of ``meta.json["expression_names"]``;
* ``identity_coeffs`` float32 ``[I]`` and ``identity``: a 0-d string array with the identity name.

The default dataset (:func:`ensure_default_dataset`) is 128 px, 40 videos (32 train + 8 test, i.e.
16 + 4 identities with 2 clips each), 64 frames each, seed 0, H.264 (about 4 MB); it builds in about
20 s on one CPU core (rendering ~5 ms per 128 px frame) and is cached under ``$REENACT_CACHE`` (default
``~/.cache/reenact``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from reenact.data.video import atomic_path, umask_mode, write_frame_folder, write_video
from reenact.face.dlib_backend import DlibFaceAnalyzer
from reenact.face.model3d import EXPRESSION_NAMES, FaceModel3D, to_pixels

GENERATOR_VERSION = 4

#: Absolute limits of the pose trajectories, degrees (yaw, pitch, roll).
POSE_LIMITS: tuple[float, float, float] = (30.0, 20.0, 15.0)
#: Limit of the per-axis translation of the model origin, normalized image units.
TRANSLATION_LIMIT = 0.12
#: Amplitude of each clip's main pose oscillation as a fraction of :data:`POSE_LIMITS` (yaw, pitch, roll)...
_POSE_SWING: tuple[tuple[float, float], ...] = ((0.6, 0.85), (0.35, 0.6), (0.35, 0.65))
#: ... and its frequency range in Hz: at 25 fps a 64-frame clip (2.56 s) holds 0.8-1.2 yaw periods.
_POSE_RATE: tuple[tuple[float, float], ...] = ((0.3, 0.45), (0.3, 0.8), (0.15, 0.6))
#: Range of ``scale`` (half a face width in normalized units): faces 33-45% of the frame width.
SCALE_RANGE = (0.33, 0.45)

#: Arguments of the embedded default dataset; part of its cache key.
DEFAULT_ARGS: dict[str, Any] = {
    "videos": 40,
    "frames": 64,
    "size": 128,
    "seed": 0,
    "test_fraction": 0.2,
    "clips_per_identity": 2,
    "video_format": "mp4",
    "fps": 25.0,
}

#: Arrays of every annotation file.
ANNOTATION_KEYS = ("landmarks", "pose", "translation", "scale", "expression", "identity_coeffs", "identity")

# Skin tones from light to deep (RGB); identities interpolate between neighbours.
_SKIN_TONES = np.array(
    [(246, 214, 190), (234, 190, 160), (214, 165, 128), (190, 136, 100), (160, 108, 74), (120, 78, 52),
     (88, 56, 38)], dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [(24, 20, 20), (45, 32, 25), (75, 50, 32), (110, 75, 45), (150, 105, 60), (205, 170, 110),
     (150, 70, 35), (150, 150, 150), (215, 212, 205)], dtype=np.float64,
)
_HAIR_WEIGHTS = np.array([0.22, 0.2, 0.16, 0.12, 0.08, 0.08, 0.05, 0.05, 0.04])
_IRIS_COLOURS = np.array(
    [(60, 35, 20), (95, 60, 35), (120, 90, 50), (70, 110, 150), (90, 130, 95), (110, 120, 125)],
    dtype=np.float64,
)
_HAIR_STYLES = ("bald", "short", "medium", "long", "curly", "fringe")
_HAIR_STYLE_WEIGHTS = np.array([0.08, 0.3, 0.22, 0.2, 0.1, 0.1])
_BACKGROUNDS = ("plain", "stripes", "blobs", "checks")


@dataclass(frozen=True, eq=False)
class Identity:
    """Everything that stays fixed for one synthetic person (colours are RGB floats in 0-255)."""

    index: int
    name: str
    coeffs: np.ndarray  # [I] identity coefficients of FaceModel3D
    skin: np.ndarray
    hair_colour: np.ndarray
    hair_style: str
    hair_volume: float  # hair surface radius relative to the skull
    hairline: float  # forehead height above the eye line, model units
    brow_colour: np.ndarray
    brow_thickness: float  # model units at the inner end
    iris_colour: np.ndarray
    lip_colour: np.ndarray
    clothing_colour: np.ndarray
    light: np.ndarray  # [3] unit vector toward the light in camera space (x right, y down, z to camera)
    ambient: float
    background: str
    background_colours: np.ndarray  # [2, 3]
    background_angle: float  # gradient direction, radians
    background_seed: int
    ear_scale: float


_MODEL: FaceModel3D | None = None


def face_model() -> FaceModel3D:
    """The shared 3D landmark model, built once per process (it only holds constant buffers)."""
    global _MODEL
    if _MODEL is None:
        _MODEL = FaceModel3D()
    return _MODEL


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)])


def identity_name(index: int) -> str:
    return f"id{index:04d}"


def sample_identity(seed: int, index: int) -> Identity:
    """Person number ``index`` (any non-negative int) of the population drawn with ``seed``."""
    rng = _rng(seed, index, 1)
    coeffs = np.clip(rng.standard_normal(face_model().identity_dim), -2.5, 2.5)
    tone = rng.uniform(0.0, len(_SKIN_TONES) - 1.0)
    low = int(tone)
    skin = (1 - (tone - low)) * _SKIN_TONES[low] + (tone - low) * _SKIN_TONES[min(low + 1, len(_SKIN_TONES) - 1)]
    skin = np.clip(skin * rng.uniform(0.94, 1.04, 3), 0, 255)
    hair = _HAIR_COLOURS[rng.choice(len(_HAIR_COLOURS), p=_HAIR_WEIGHTS)] * rng.uniform(0.85, 1.15, 3)
    hair = np.clip(hair, 0, 255)
    style = str(_HAIR_STYLES[rng.choice(len(_HAIR_STYLES), p=_HAIR_STYLE_WEIGHTS)])
    volume = {"bald": 1.0, "short": rng.uniform(1.03, 1.08), "medium": rng.uniform(1.06, 1.14),
              "long": rng.uniform(1.05, 1.14), "curly": rng.uniform(1.15, 1.3),
              "fringe": rng.uniform(1.05, 1.12)}[style]
    hairline = rng.uniform(0.55, 0.7) if style == "fringe" else rng.uniform(0.95, 1.25)
    # Brows are darker than blond/grey hair so they stay visible, as on most real faces.
    brow = np.minimum(hair, skin * 0.45) * rng.uniform(0.8, 1.0) + 8
    iris = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] * rng.uniform(0.85, 1.15, 3)
    lip = np.clip(skin * np.array([0.82, 0.52, 0.52]) + np.array([25, 0, 5]) * rng.uniform(0.5, 1.5), 0, 255)
    clothing = rng.uniform(20, 230, 3)
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.7, -0.15), 1.0])
    light /= np.linalg.norm(light)
    background = str(_BACKGROUNDS[rng.choice(len(_BACKGROUNDS), p=[0.4, 0.2, 0.25, 0.15])])
    base = rng.uniform(30, 225, 3)
    second = np.clip(base + rng.normal(0, 35, 3), 0, 255)
    return Identity(
        index=index,
        name=identity_name(index),
        coeffs=coeffs,
        skin=skin,
        hair_colour=hair,
        hair_style=style,
        hair_volume=float(volume),
        hairline=float(hairline),
        brow_colour=brow,
        brow_thickness=float(rng.uniform(0.07, 0.11)),
        iris_colour=np.clip(iris, 0, 255),
        lip_colour=lip,
        clothing_colour=clothing,
        light=light,
        ambient=float(rng.uniform(0.4, 0.55)),
        background=background,
        background_colours=np.stack([base, second]),
        background_angle=float(rng.uniform(0, 2 * math.pi)),
        background_seed=int(rng.integers(2**31)),
        ear_scale=float(rng.uniform(0.9, 1.1)),
    )


# --------------------------------------------------------------------------------------------------
# Trajectories


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, low: float, high: float, terms: int = 3) -> np.ndarray:
    """Sum of ``terms`` sinusoids with random frequencies in ``[low, high]`` Hz; values in ``[-1, 1]``."""
    frequencies = rng.uniform(low, high, terms)
    phases = rng.uniform(0, 2 * math.pi, terms)
    amplitudes = rng.uniform(0.5, 1.0, terms) / np.arange(1, terms + 1)
    signal = (amplitudes[:, None] * np.sin(2 * math.pi * frequencies[:, None] * t + phases[:, None])).sum(0)
    return signal / amplitudes.sum()


def _bump(t: np.ndarray, start: float, duration: float) -> np.ndarray:
    """Raised-cosine pulse of height 1 over ``[start, start + duration]``."""
    phase = (t - start) / duration
    return np.where((phase > 0) & (phase < 1), 0.5 - 0.5 * np.cos(2 * math.pi * np.clip(phase, 0, 1)), 0.0)


def _events(rng: np.random.Generator, t: np.ndarray, rate: float, duration: tuple[float, float]) -> list:
    """Poisson event (start, duration) pairs overlapping the clip, including ones cut at its start."""
    span = t[-1] - t[0] if len(t) > 1 else 0.0
    count = rng.poisson(rate * (span + duration[1]))
    starts = rng.uniform(t[0] - duration[1], t[0] + span, count)
    return [(float(s), float(rng.uniform(*duration))) for s in np.sort(starts)]


def sample_trajectory(seed: int, index: int, clip: int, frames: int, fps: float = 25.0) -> dict[str, np.ndarray]:
    """Smooth talking-head motion of clip ``clip`` of identity ``index``.

    Returns float32 arrays (the exact values the renderer uses): ``pose [F, 3]`` (yaw, pitch, roll
    degrees, within :data:`POSE_LIMITS`), ``translation [F, 2]``, ``scale [F]``, ``expression [F, E]``
    (in ``[0, 1]``, order of ``FaceModel3D.expression_names``) and ``gaze [F, 2]`` (iris offset in
    ``[-1, 1]``, rendered but not part of the annotation files).
    """
    rng = _rng(seed, index, clip, 2)
    t = np.arange(frames) / fps
    pose = np.empty((frames, 3))
    # Each clip turns the head through a large yaw swing (the main oscillation spans 36-51 degrees, i.e. a
    # turn through about +-25 degrees within a 64-frame clip), nods and tilts: a same-identity protocol whose
    # driving frames lie 10+ frames from the source then differs from the source as much as a real
    # talking-head clip does (copy-source L1 >= 0.05, see the data README).
    axes = zip(POSE_LIMITS, _POSE_SWING, _POSE_RATE, strict=True)
    for axis, (limit, (a_low, a_high), (f_low, f_high)) in enumerate(axes):
        base = rng.uniform(-0.25, 0.25) * limit
        amplitude = rng.uniform(a_low, a_high) * limit
        frequency = rng.uniform(f_low, f_high)
        phase = rng.uniform(0, 2 * math.pi)
        swing = amplitude * np.sin(2 * math.pi * frequency * t + phase)
        jitter = 0.08 * limit * _smooth_noise(rng, t, 0.4, 1.2)
        pose[:, axis] = np.clip(base + swing + jitter, -limit, limit)
    translation = rng.uniform(-0.4, 0.4, 2) * TRANSLATION_LIMIT + np.stack(
        [_smooth_noise(rng, t, 0.15, 0.6) for _ in range(2)], axis=1
    ) * 0.55 * TRANSLATION_LIMIT
    translation = np.clip(translation, -TRANSLATION_LIMIT, TRANSLATION_LIMIT)
    low, high = SCALE_RANGE
    scale = rng.uniform(low + 0.01, high - 0.01) * (1.0 + 0.05 * _smooth_noise(rng, t, 0.1, 0.5))
    scale = np.clip(scale, low, high)

    expression = np.zeros((frames, face_model().expression_dim))
    column = {name: i for i, name in enumerate(face_model().expression_names)}
    # Speech: syllables every 140-290 ms, some louder, with pauses between phrases.
    talkativeness = rng.uniform(0.4, 1.0)
    jaw = np.zeros(frames)
    pucker = np.zeros(frames)
    cursor = rng.uniform(-0.3, 0.0)
    while cursor < t[-1] + 0.3:
        length = rng.uniform(0.14, 0.29)
        if rng.random() < 0.12:
            cursor += rng.uniform(0.25, 0.6)  # a pause between phrases
            continue
        amplitude = rng.uniform(0.15, 0.85) * talkativeness
        jaw = np.maximum(jaw, amplitude * _bump(t, cursor, length * 1.3))
        if rng.random() < 0.2:  # rounded vowels ("oo", "o") pucker the lips
            pucker = np.maximum(pucker, rng.uniform(0.3, 0.8) * _bump(t, cursor, length * 1.4))
        cursor += length
    expression[:, column["jaw_open"]] = np.clip(jaw, 0, 1)
    expression[:, column["lip_pucker"]] = np.clip(pucker, 0, 1)
    blink_left = np.zeros(frames)
    blink_right = np.zeros(frames)
    for start, duration in _events(rng, t, 0.35, (0.15, 0.3)):
        pulse = np.clip(1.6 * _bump(t, start, duration), 0, 1)  # lids stay shut for a moment
        wink = rng.random()  # 3% left-eye winks, 3% right-eye winks, the rest blink both eyes
        if wink >= 0.03:
            blink_right = np.maximum(blink_right, pulse)
        if wink < 0.03 or wink >= 0.06:
            blink_left = np.maximum(blink_left, pulse)
    expression[:, column["blink_left"]] = blink_left
    expression[:, column["blink_right"]] = blink_right
    smile = (rng.random() < 0.6) * rng.uniform(0.0, 0.6) + 0.2 * _smooth_noise(rng, t, 0.1, 0.5)
    expression[:, column["smile"]] = np.clip(smile, 0, 1)
    raise_ = np.zeros(frames)
    for start, duration in _events(rng, t, 0.3, (0.4, 1.0)):
        raise_ = np.maximum(raise_, rng.uniform(0.3, 1.0) * _bump(t, start, duration))
    expression[:, column["brow_raise"]] = np.clip(raise_, 0, 1)
    lower = (rng.random() < 0.3) * rng.uniform(0.0, 0.4) + 0.1 * _smooth_noise(rng, t, 0.1, 0.5)
    expression[:, column["brow_lower"]] = np.clip(lower, 0, 1)

    gaze = np.clip(
        rng.uniform(-0.4, 0.4, 2) + 0.25 * np.stack([_smooth_noise(rng, t, 0.2, 1.0) for _ in range(2)], 1),
        -1, 1,
    )
    arrays = {"pose": pose, "translation": translation, "scale": scale, "expression": expression, "gaze": gaze}
    return {key: value.astype(np.float32) for key, value in arrays.items()}


# --------------------------------------------------------------------------------------------------
# Geometry helpers


def _rotation_np(pose: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees ``[3]`` -> ``[3, 3]``, same convention as the torch model."""
    yaw, pitch, roll = np.radians(pose)
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    return np.array([
        [cr * cy, cr * sy * sp - sr * cp, cr * sy * cp + sr * sp],
        [sr * cy, sr * sy * sp + cr * cp, sr * sy * cp - cr * sp],
        [-sy, cy * sp, cy * cp],
    ])


def _curve(points: np.ndarray, closed: bool = False, samples: int = 5) -> np.ndarray:
    """Catmull-Rom spline through ``[N, 2]`` points -> a denser ``[M, 2]`` polyline."""
    points = np.asarray(points, dtype=np.float64)
    if closed:
        padded = np.concatenate([points[-1:], points, points[:2]])
        segments = len(points)
    else:
        padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
        segments = len(points) - 1
    s = np.linspace(0.0, 1.0, samples, endpoint=False)[None, :, None]
    p0, p1, p2, p3 = (padded[i : i + segments][:, None, :] for i in range(4))
    curve = 0.5 * (
        2 * p1 + (p2 - p0) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s**2 + (3 * p1 - p0 - 3 * p2 + p3) * s**3
    )
    curve = curve.reshape(-1, 2)
    return curve if closed else np.concatenate([curve, points[-1:]])


_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex precision for smooth anti-aliased edges


def _fix(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << _SHIFT)).astype(np.int32)


def _fill(image: np.ndarray, points: np.ndarray, colour: Any) -> None:
    cv2.fillPoly(image, [_fix(points)], _colour(colour), cv2.LINE_AA, _SHIFT)


def _line(image: np.ndarray, points: np.ndarray, colour: Any, thickness: float, closed: bool = False) -> None:
    cv2.polylines(image, [_fix(points)], closed, _colour(colour), max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _bounds(points: np.ndarray, shape: tuple[int, int], margin: int = 2) -> tuple[int, int, int, int]:
    """Integer pixel box ``(x0, y0, x1, y1)`` around ``points [N, 2]``, clipped to an image of ``shape``."""
    x0, y0 = np.floor(points.min(0)).astype(int) - margin
    x1, y1 = np.ceil(points.max(0)).astype(int) + margin + 1
    return max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])


def _blend(image: np.ndarray, mask: np.ndarray, colour: np.ndarray | Sequence[float]) -> None:
    """``image = image * (1 - a) + colour * a`` in place with ``a = mask / 255``, inside the mask's bounding box.

    ``image`` is ``[H, W, 3]`` float32, ``mask`` ``[H, W]`` uint8, ``colour`` an RGB triple or ``[H, W, 3]``.
    """
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return
    alpha = mask[y : y + h, x : x + w].astype(np.float32)[..., None] * (1.0 / 255.0)
    target = image[y : y + h, x : x + w]
    colour = np.asarray(colour, dtype=np.float32)
    if colour.ndim == 3 and colour.shape[:2] == image.shape[:2]:
        colour = colour[y : y + h, x : x + w]
    target += (colour - target) * alpha


def _colour(colour: Any) -> tuple:
    if np.isscalar(colour):
        return (float(colour),)
    return tuple(float(c) for c in np.clip(colour, 0, 255))


def _ellipse_points(centre: np.ndarray, axis_a: np.ndarray, axis_b: np.ndarray, count: int = 24) -> np.ndarray:
    """Points ``[count, D]`` on the ellipse ``centre + cos * axis_a + sin * axis_b`` (any dimension D)."""
    angle = np.linspace(0, 2 * math.pi, count, endpoint=False)[:, None]
    return centre + np.cos(angle) * axis_a + np.sin(angle) * axis_b


# --------------------------------------------------------------------------------------------------
# Rendering


@dataclass
class _Camera:
    """Weak-perspective camera of one frame, mapping model units to internal-resolution pixels."""

    rotation: np.ndarray  # [3, 3]
    translation: np.ndarray  # [2] normalized
    scale: float
    size: int  # internal (supersampled) resolution

    def camera(self, points: np.ndarray) -> np.ndarray:
        """Model points ``[..., 3]`` -> pixel x, y and depth (pixels, toward the camera) ``[..., 3]``."""
        rotated = points @ self.rotation.T
        half = self.size / 2
        out = np.empty_like(rotated)
        out[..., 0] = (self.scale * rotated[..., 0] + self.translation[0] + 1) * half - 0.5
        out[..., 1] = (self.scale * rotated[..., 1] + self.translation[1] + 1) * half - 0.5
        out[..., 2] = self.scale * rotated[..., 2] * half
        return out

    def px(self, points: np.ndarray) -> np.ndarray:
        return self.camera(points)[..., :2]

    @property
    def unit(self) -> float:
        """Pixels per model unit."""
        return self.scale * self.size / 2


class _Head:
    """Auxiliary 3D geometry of one identity in model units: skull, hair, ears, neck and body."""

    def __init__(self, params: Identity, neutral: np.ndarray) -> None:
        self.params = params
        half_width = (neutral[16, 0] - neutral[0, 0]) / 2
        eye_y = neutral[[36, 39, 42, 45], 1].mean()
        chin_y = neutral[8, 1]
        self.eye_y, self.chin_y, self.half_width = eye_y, chin_y, half_width
        self.brow_y = neutral[17:27, 1].mean()
        # Skull: ~150 mm wide, ~190 mm deep, its front meets the forehead just above the nasion.
        radii = np.array([1.06 * half_width, 1.5, 1.36])
        centre = np.array([0.0, eye_y - 0.35, neutral[27, 2] + 0.06 - radii[2]])
        self.skull = (centre, radii)
        # Lower face for shading: an ellipsoid whose front passes through the cheeks and lips.
        face_radii = np.array([0.95 * half_width, (chin_y - eye_y) / 2 + 0.3, 0.95])
        face_centre = np.array([0.0, (eye_y + chin_y) / 2, neutral[48, 2] + 0.08 - face_radii[2]])
        self.face = (face_centre, face_radii)
        self.skull_samples = self._ellipsoid_samples(centre, radii, 14, 28)

        volume = params.hair_volume
        hair_radii = radii * volume + np.array([0.0, 0.0, 0.02])
        hair_centre = centre + np.array([0.0, -(volume - 1.0) * radii[1] * 0.6, -(volume - 1.0) * 0.3])
        self.hair = (hair_centre, hair_radii)
        samples = self._ellipsoid_samples(hair_centre, hair_radii, 14, 28)
        style = params.hair_style
        bottom = {"bald": -10, "short": eye_y - 0.1, "medium": eye_y + 0.55, "long": eye_y + 0.4,
                  "curly": eye_y + 0.5, "fringe": eye_y + 0.3}[style]
        keep = samples[:, 1] < bottom
        # Hair never hangs in front of the face: drop samples in front of the ear plane below the hairline.
        keep &= ~((samples[:, 2] > centre[2] + 0.25) & (samples[:, 1] > eye_y - params.hairline + 0.1))
        self.hair_samples = samples[keep]
        if style == "long":
            drop = chin_y + 1.1
            sides = []
            for x in (-1.0, 1.0):
                for y in np.linspace(eye_y, drop, 6):
                    for z in np.linspace(centre[2] - 0.9 * radii[2], centre[2] + 0.1, 4):
                        sides.append((x * hair_radii[0] * 1.02, y, z))
            self.hair_samples = np.concatenate([self.hair_samples, np.array(sides)])
        # The hair cap: a quad mesh on the hair ellipsoid from the crown down to the hairline, which is
        # highest over the forehead, lower at the temples and reaches the nape at the back.
        phi = np.radians(np.linspace(-180, 180, 33))
        hairline_y = np.minimum(eye_y - params.hairline + 0.45 * (phi / np.radians(90)) ** 2, bottom)
        top_y = hair_centre[1] - hair_radii[1] * 0.999
        rows = np.linspace(0.0, 1.0, 9)[:, None]
        y = top_y + (hairline_y[None, :] - top_y) * rows
        rho = np.sqrt(np.clip(1 - ((y - hair_centre[1]) / hair_radii[1]) ** 2, 0.0, 1.0))
        grid = np.stack([hair_centre[0] + hair_radii[0] * rho * np.sin(phi), y,
                         hair_centre[2] + hair_radii[2] * rho * np.cos(phi)], axis=-1)
        corners = [grid[:-1, :-1], grid[:-1, 1:], grid[1:, 1:], grid[1:, :-1]]
        self.hair_quads = np.stack(corners, axis=2).reshape(-1, 4, 3)
        centres = self.hair_quads.mean(axis=1)
        normals = (centres - hair_centre) / hair_radii**2
        self.hair_normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
        self.has_hair = style != "bald"

        # Ears stick out from the sides of the skull, tilted forward; their normal decides visibility.
        ears = []
        for sign in (-1.0, 1.0):
            ear_centre = np.array([sign * 1.04 * half_width, eye_y + 0.32, neutral[0, 2] - 0.18])
            height = 0.42 * params.ear_scale
            across = np.array([sign * 0.4, 0.0, -1.0])
            across = across / np.linalg.norm(across) * 0.2 * params.ear_scale
            outline = _ellipse_points(ear_centre, np.array([0.0, height, 0.0]), across, 20)
            inner = _ellipse_points(ear_centre + np.array([sign * 0.01, 0.02, 0.02]),
                                    np.array([0.0, height * 0.6, 0.0]), across * 0.55, 16)
            normal = np.cross(np.array([0.0, 1.0, 0.0]), across)
            normal = normal * np.sign(normal[0] * sign)
            ears.append((outline, inner, normal / np.linalg.norm(normal)))
        self.ears = ears

        neck_z = neutral[8, 2] - 0.72
        self.neck_top = np.array([[-0.68, chin_y - 0.45, neck_z], [0.68, chin_y - 0.45, neck_z]])
        self.neck_bottom = np.array([[0.76, chin_y + 1.2, neck_z], [-0.76, chin_y + 1.2, neck_z]])
        top = chin_y + 0.85
        self.torso = np.array([
            (-0.76, top, neck_z), (-1.3, top + 0.25, neck_z), (-2.2, top + 0.6, neck_z), (-2.7, top + 1.3, neck_z),
            (-2.9, top + 4.0, neck_z), (2.9, top + 4.0, neck_z), (2.7, top + 1.3, neck_z),
            (2.2, top + 0.6, neck_z), (1.3, top + 0.25, neck_z), (0.76, top, neck_z),
        ])
        self.collar = np.array([(-0.7, top + 0.02, neck_z + 0.2), (0.0, top + 0.75, neck_z + 0.5),
                                (0.7, top + 0.02, neck_z + 0.2)])

    @staticmethod
    def _ellipsoid_samples(centre: np.ndarray, radii: np.ndarray, rings: int, segments: int) -> np.ndarray:
        theta = np.linspace(0, math.pi, rings)[:, None]
        phi = np.linspace(0, 2 * math.pi, segments, endpoint=False)[None, :]
        height = np.broadcast_to(-np.cos(theta), (rings, segments))
        unit = np.stack([np.sin(theta) * np.sin(phi), height, np.sin(theta) * np.cos(phi)], -1)
        return centre + unit.reshape(-1, 3) * radii


def _ellipsoid_shading(
    camera: _Camera, centre: np.ndarray, radii: np.ndarray, grid: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ray-cast an ellipsoid (model units) along the view axis over pixel grids.

    Returns (hit mask ``[H, W]``, depth ``[H, W]`` in model units toward the camera, camera-space unit
    normals ``[3, H, W]``). Pixels that miss get the normal at the ray's closest approach, which
    continues the shading smoothly past the silhouette.
    """
    xs, ys = grid
    rotation = camera.rotation
    inverse_radii = 1.0 / radii
    # Camera-space ray through (x', y'): X(l) = R^T (x', y', l); in the ellipsoid's unit-sphere space
    # that is l * a + x' * bx + y' * by + b0.
    a = inverse_radii * rotation[2]
    bx = inverse_radii * rotation[0]
    by = inverse_radii * rotation[1]
    b0 = -inverse_radii * centre
    aa = a @ a
    ab = xs * (a @ bx) + ys * (a @ by) + a @ b0
    bb = (xs * xs * (bx @ bx) + ys * ys * (by @ by) + 2 * xs * ys * (bx @ by) + 2 * xs * (bx @ b0)
          + 2 * ys * (by @ b0) + b0 @ b0)
    discriminant = ab * ab - aa * (bb - 1.0)
    hit = discriminant > 0
    depth = (-ab + np.sqrt(np.maximum(discriminant, 0.0))) / aa
    # Gradient of the implicit surface, mapped to camera space: R @ diag(1/r) @ (sphere point).
    m = rotation * inverse_radii[None, :]  # R @ diag(1/r)
    normal = (depth[None] * (m @ a)[:, None, None] + xs[None] * (m @ bx)[:, None, None]
              + ys[None] * (m @ by)[:, None, None] + (m @ b0)[:, None, None])
    normal /= np.maximum(np.linalg.norm(normal, axis=0, keepdims=True), 1e-9)
    return hit, depth, normal


class Renderer:
    """Paints frames of one identity. ``size`` is the output side; drawing happens at ``size * supersample``."""

    def __init__(self, params: Identity, size: int, supersample: int | None = None) -> None:
        self.params = params
        self.size = int(size)
        self.supersample = int(supersample or (2 if size >= 96 else 3))
        self.internal = self.size * self.supersample
        model = face_model()
        with torch.no_grad():
            coeffs = torch.as_tensor(params.coeffs, dtype=torch.float64)
            neutral = model.landmarks_3d(coeffs, torch.zeros(model.expression_dim, dtype=torch.float64)).numpy()
        self.head = _Head(params, neutral)
        self.background = _background(params, self.internal)
        coarse = max(16, self.internal // 4)
        centres = (np.arange(coarse) + 0.5) / coarse * 2 - 1  # normalized pixel centres of the shading grid
        self.shade_u, self.shade_v = np.meshgrid(centres, centres)

    def landmarks(self, trajectory: dict) -> tuple[np.ndarray, np.ndarray]:
        """3D landmarks ``[F, 68, 3]`` (model units) and normalized 2D landmarks ``[F, 68, 2]`` (float64)."""
        model = face_model()
        with torch.no_grad():
            points = model.landmarks_3d(
                torch.as_tensor(self.params.coeffs, dtype=torch.float64)[None],
                torch.as_tensor(trajectory["expression"], dtype=torch.float64),
            )
            projected = model.project(
                points,
                torch.as_tensor(trajectory["pose"], dtype=torch.float64),
                torch.as_tensor(trajectory["translation"], dtype=torch.float64),
                torch.as_tensor(trajectory["scale"], dtype=torch.float64),
            )
        return points.numpy(), projected.numpy()

    def render(self, trajectory: dict) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``[F, size, size, 3]`` uint8 and normalized landmarks ``[F, 68, 2]`` for a trajectory."""
        points3d, landmarks = self.landmarks(trajectory)
        frames = np.empty((len(points3d), self.size, self.size, 3), dtype=np.uint8)
        for index in range(len(points3d)):
            frames[index] = self.render_frame(
                points3d[index],
                trajectory["pose"][index],
                trajectory["translation"][index],
                float(trajectory["scale"][index]),
                trajectory["expression"][index],
                trajectory["gaze"][index],
            )
        return frames, landmarks

    # ---- one frame -------------------------------------------------------------------------------

    def render_frame(
        self,
        points: np.ndarray,
        pose: np.ndarray,
        translation: np.ndarray,
        scale: float,
        expression: np.ndarray,
        gaze: np.ndarray,
    ) -> np.ndarray:
        """One frame ``[size, size, 3]`` uint8 from 3D landmarks ``[68, 3]`` and the camera."""
        params, head, size = self.params, self.head, self.internal
        pose = np.asarray(pose, dtype=np.float64)
        camera = _Camera(_rotation_np(pose), np.asarray(translation, dtype=np.float64), float(scale), size)
        body_pose = np.array([0.3 * pose[0], 0.0, 0.25 * pose[2]])
        body = _Camera(_rotation_np(body_pose), camera.translation, scale, size)
        unit = camera.unit
        canvas = self.background.copy()
        smile = float(expression[EXPRESSION_NAMES.index("smile")])
        shade = self._shading(camera)

        # Body and neck: the body follows the head's yaw and roll only partly.
        _fill(canvas, body.px(head.torso), params.clothing_colour)
        _fill(canvas, body.px(head.collar), params.skin * 0.8)
        neck = np.concatenate([camera.px(head.neck_top), body.px(head.neck_bottom)])
        _fill(canvas, neck, params.skin * 0.82)
        image = canvas.astype(np.float32)

        hair_mask = None
        if head.has_hair:  # hair behind the head, shaded like the skull it covers
            hair_mask = np.zeros((size, size), np.uint8)
            _fill(hair_mask, cv2.convexHull(camera.px(head.hair_samples).astype(np.float32))[:, 0], 255)
            hair_colour = self._hair_colour(shade)
            _blend(image, hair_mask, hair_colour)

        ears_behind, ears_front = [], []
        for outline, inner, normal in head.ears:
            (ears_front if (camera.rotation @ normal)[2] > -0.15 else ears_behind).append((outline, inner))
        for outline, inner in ears_behind:
            self._ear(image, camera, outline, inner, shade)

        # Head layer: flat albedo of skin and features; composited through the head mask afterwards.
        layer = np.empty((size, size, 3), np.uint8)
        layer[:] = np.round(params.skin).astype(np.uint8)
        mask = np.zeros((size, size), np.uint8)
        _fill(mask, cv2.convexHull(camera.px(head.skull_samples).astype(np.float32))[:, 0], 255)
        p3 = camera.camera(points)
        _fill(mask, _curve(p3[0:17, :2], samples=4), 255)
        # Occlusion/shadow map: 200 = unshaded, lower = darker, up to 255 = 27% brighter.
        ao = np.full((size, size), 200, np.uint8)
        below = points[2:15] + np.array([0.0, 0.3, -0.2])
        _fill(ao, np.concatenate([camera.px(points[2:15]), camera.px(below)[::-1]]), 135)

        features = [
            (p3[36:42, 2].mean(), "eye_right"), (p3[42:48, 2].mean(), "eye_left"),
            (p3[17:22, 2].mean(), "brow_right"), (p3[22:27, 2].mean(), "brow_left"),
            (p3[[27, 28, 29, 30, 31, 35], 2].mean(), "nose"), (p3[48:60, 2].mean(), "mouth"),
        ]
        for _, name in sorted(features):
            if name.startswith("eye"):
                self._eye(layer, ao, camera, points, name == "eye_left", gaze)
            elif name.startswith("brow"):
                self._brow(layer, camera, points, name == "brow_left")
            elif name == "nose":
                self._nose(layer, ao, camera, points, smile)
            else:
                self._mouth(layer, ao, camera, points)

        lit = layer.astype(np.float32)
        lit *= shade[..., None]
        _blend(image, mask, lit)
        for outline, inner in ears_front:
            self._ear(image, camera, outline, inner, shade)
        if hair_mask is not None:
            self._front_hair(image, camera, hair_colour)
        occlusion = cv2.GaussianBlur(ao, (0, 0), max(0.6, 0.045 * unit)).astype(np.float32)
        image *= occlusion[..., None] * (1.0 / 200.0)
        image = cv2.resize(image, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return np.clip(image + 0.5, 0, 255).astype(np.uint8)

    def _shading(self, camera: _Camera) -> np.ndarray:
        """Diffuse + faint specular shading ``[S, S]`` float32 of the head surface at internal resolution.

        The head is a skull ellipsoid above the brows blended into a lower-face ellipsoid below them;
        shading varies slowly, so it is ray-cast on a 4x coarser grid and interpolated up.
        """
        head, params = self.head, self.params
        xs = (self.shade_u - camera.translation[0]) / camera.scale
        ys = (self.shade_v - camera.translation[1]) / camera.scale
        _, depth_s, normal_s = _ellipsoid_shading(camera, *head.skull, (xs, ys))
        _, depth_f, normal_f = _ellipsoid_shading(camera, *head.face, (xs, ys))
        rotation = camera.rotation
        # Model-space height of the lower-face surface point decides which surface this pixel shows.
        y_model = rotation[0, 1] * xs + rotation[1, 1] * ys + rotation[2, 1] * depth_f
        weight = np.clip((y_model - (head.brow_y - 0.2)) / 0.45, 0.0, 1.0)
        weight = weight * weight * (3 - 2 * weight)
        normal = weight * normal_f + (1 - weight) * normal_s
        normal /= np.maximum(np.linalg.norm(normal, axis=0, keepdims=True), 1e-6)
        lambert = np.tensordot(params.light, normal, axes=1)
        shade = params.ambient + (1.1 - params.ambient) * np.clip((lambert + 0.15) / 1.15, 0.0, 1.0)
        shade += np.clip(lambert, 0, 1) ** 24 * 0.08  # a faint specular sheen on forehead and cheeks
        return cv2.resize(shade.astype(np.float32), (self.internal, self.internal), interpolation=cv2.INTER_LINEAR)

    def _hair_colour(self, shade: np.ndarray) -> np.ndarray:
        """``[S, S, 3]`` float32 hair colour under the head's shading (hair is less shiny than skin)."""
        colour = self.params.hair_colour.astype(np.float32)
        return colour[None, None, :] * (0.45 + 0.55 * shade[..., None])

    def _ear(self, image: np.ndarray, camera: _Camera, outline: np.ndarray, inner: np.ndarray,
             shade: np.ndarray) -> None:
        outer2, inner2 = camera.px(outline), camera.px(inner)
        x0, y0, x1, y1 = _bounds(outer2, image.shape[:2])
        if x1 <= x0 or y1 <= y0:
            return
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        _fill(mask, outer2 - (x0, y0), 255)
        cavity = np.zeros_like(mask)
        _fill(cavity, inner2 - (x0, y0), 255)
        tone = (0.95 - 0.3 * cavity.astype(np.float32) / 255.0) * shade[y0:y1, x0:x1]
        colour = self.params.skin.astype(np.float32)[None, None, :] * tone[..., None]
        _blend(image[y0:y1, x0:x1], mask, colour)

    # ---- features ------------------------------------------------------------------------------

    def _eye(self, layer: np.ndarray, ao: np.ndarray, camera: _Camera, points: np.ndarray, left: bool,
             gaze: np.ndarray) -> None:
        """Socket shadow, lid crease, sclera with iris and pupil (when open) and the lash line."""
        order = [42, 43, 44, 45, 46, 47] if left else [36, 37, 38, 39, 40, 41]
        eye3 = points[order]
        eye2 = camera.px(eye3)
        centre3 = eye3.mean(axis=0)
        width3 = np.linalg.norm(points[45 if left else 36] - points[42 if left else 39])
        unit = camera.unit
        # Socket shadow between brow and eye and the lid crease keep the eye region dark, as in photos.
        socket = _ellipse_points(centre3 + np.array([0.0, -0.05, 0.02]), np.array([0.8 * width3, 0, 0]),
                                 np.array([0.0, 0.17, 0.0]), 24)
        _fill(ao, camera.px(socket), 168)
        crease3 = eye3[:4] + np.array([0.0, -0.06, 0.01])
        crease3[[0, 3]] += np.array([0.0, 0.03, 0.0])
        _line(ao, _curve(camera.px(crease3)), 130, max(1.0, 0.02 * unit))
        contour = _curve(eye2, closed=True, samples=5)
        upper = _curve(eye2[[0, 1, 2, 3]])
        opening = (np.linalg.norm(eye2[1] - eye2[5]) + np.linalg.norm(eye2[2] - eye2[4])) / 2
        width = np.linalg.norm(eye2[0] - eye2[3])
        if opening > 0.12 * width and width > 1:
            _fill(layer, contour, (238, 232, 226))
            x0, y0, x1, y1 = _bounds(contour, layer.shape[:2])
            if x1 > x0 and y1 > y0:
                roi = layer[y0:y1, x0:x1]
                patch = roi.copy()
                clip = np.zeros(roi.shape[:2], np.uint8)
                _fill(clip, contour - (x0, y0), 255)
                offset = np.array([0.22 * gaze[0], 0.12 * gaze[1]]) * width3
                iris_centre = camera.px(centre3 + np.array([offset[0], offset[1] - 0.005, 0.01]))
                radius = 0.23 * width3 * unit
                # The iris narrows as the head turns; softened (sqrt) because the eyeball turns too.
                narrowing = abs(camera.rotation[0, 0]) ** 0.5
                axes = (max(1, int(radius * narrowing * 16)), max(1, int(radius * 16)))
                angle = math.degrees(math.atan2(camera.rotation[1, 0], camera.rotation[0, 0]))
                centre_fixed = tuple(int(v) for v in _fix(iris_centre - (x0, y0)))
                cv2.ellipse(patch, centre_fixed, axes, angle, 0, 360, _colour(self.params.iris_colour),
                            -1, cv2.LINE_AA, _SHIFT)
                pupil_axes = (max(1, int(axes[0] * 0.45)), max(1, int(axes[1] * 0.45)))
                cv2.ellipse(patch, centre_fixed, pupil_axes, angle, 0, 360, (12, 10, 10), -1, cv2.LINE_AA, _SHIFT)
                glint = iris_centre - (x0, y0) + np.array([0.3 * radius, -0.35 * radius])
                cv2.circle(patch, tuple(int(v) for v in _fix(glint)), max(1, int(radius * 0.18 * 16)),
                           (250, 250, 250), -1, cv2.LINE_AA, _SHIFT)
                weight = clip.astype(np.float32)[..., None] / 255.0
                roi[:] = (patch * weight + roi * (1 - weight)).astype(np.uint8)
            _line(layer, _curve(eye2[[3, 4, 5, 0]]), self.params.skin * 0.55, max(1.0, 0.012 * unit))
        lash = self.params.brow_colour * 0.5
        _line(layer, upper, lash, max(1.0, 0.03 * unit))

    def _brow(self, layer: np.ndarray, camera: _Camera, points: np.ndarray, left: bool) -> None:
        """A tapered brow whose upper edge runs through the landmarks, as in the iBUG annotation."""
        order = [26, 25, 24, 23, 22] if left else [17, 18, 19, 20, 21]  # outer to inner
        top3 = points[order]
        thickness = self.params.brow_thickness * np.array([0.45, 0.7, 0.85, 0.95, 1.0])
        bottom3 = top3 + np.stack([np.zeros(5), thickness, np.full(5, 0.01)], axis=1)
        bottom3[-1, 1] += 0.01
        top = _curve(camera.px(top3), samples=4)
        bottom = _curve(camera.px(bottom3), samples=4)
        _fill(layer, np.concatenate([top, bottom[::-1]]), self.params.brow_colour)

    def _nose(self, layer: np.ndarray, ao: np.ndarray, camera: _Camera, points: np.ndarray, smile: float) -> None:
        """A faceted nose (bridge sides, tip, underside, wings), nostrils and the shadows around it."""
        light = self.params.light
        ridge = points[27:31]
        half = np.array([0.085, 0.09, 0.1, 0.0])
        back = np.array([0.04, 0.08, 0.14, 0.0])
        left_side = ridge[:3] + np.stack([-half[:3], np.zeros(3), -back[:3]], 1)
        right_side = ridge[:3] + np.stack([half[:3], np.zeros(3), -back[:3]], 1)
        wing_l = points[31] + np.array([-0.05, -0.045, 0.0])
        wing_r = points[35] + np.array([0.05, -0.045, 0.0])
        tip, base_l, base_c, base_r = points[30], points[32], points[33], points[34]
        faces = [
            (ridge[0], ridge[1], left_side[1], left_side[0]),
            (ridge[1], ridge[2], left_side[2], left_side[1]),
            (ridge[2], tip, wing_l, left_side[2]),
            (ridge[0], right_side[0], right_side[1], ridge[1]),
            (ridge[1], right_side[1], right_side[2], ridge[2]),
            (ridge[2], right_side[2], wing_r, tip),
            (tip, base_c, base_l, wing_l),
            (tip, wing_r, base_r, base_c),
            (wing_l, base_l, points[31], wing_l + np.array([-0.03, 0.05, -0.04])),
            (wing_r, wing_r + np.array([0.03, 0.05, -0.04]), points[35], base_r),
        ]
        # Each facet is painted in skin colour (so the nose hides whatever lies behind it, e.g. the far
        # eye's inner corner when the head turns) and darkens or brightens the occlusion map by its Lambert
        # term relative to that of the face plane it stands on, which the ellipsoid shading already gives.
        inside = np.array([0.0, ridge[2, 1], ridge[2, 2] - 0.6])
        forward = camera.rotation[:, 2]
        base_shade = max(0.2, float(light @ forward))
        drawn = []
        for quad in faces:
            quad = np.array(quad)
            normal = np.cross(quad[1] - quad[0], quad[2] - quad[0]) + np.cross(quad[2] - quad[0], quad[3] - quad[0])
            normal /= max(np.linalg.norm(normal), 1e-9)
            if normal @ (quad.mean(0) - inside) < 0:
                normal = -normal
            normal_camera = camera.rotation @ normal
            if normal_camera[2] <= 0:
                continue
            shade = max(0.0, float(light @ normal_camera)) / base_shade
            drawn.append((float(camera.camera(quad)[:, 2].mean()), quad, shade))
        for _, quad, shade in sorted(drawn, key=lambda item: item[0]):
            polygon = camera.px(quad)
            _fill(layer, polygon, self.params.skin)
            _fill(ao, polygon, int(np.clip(200 * (0.35 + 0.65 * shade), 110, 240)))
        # Nostrils lie in the nose's underside, which faces down and forward: slits that widen as the
        # face looks up.
        underside = np.array([0.0, -0.5, 1.0]) / math.hypot(0.5, 1.0)
        for a, b in ((31, 32), (35, 34)):
            centre = 0.45 * points[a] + 0.55 * points[b] + np.array([0.0, -0.012, 0.0])
            nostril = _ellipse_points(centre, np.array([0.055, 0.0, 0.0]), underside * 0.045, 16)
            _fill(layer, camera.px(nostril), self.params.skin * 0.3)
        # Nasolabial folds deepen with a smile.
        for wing, corner, sign in ((31, 48, -1.0), (35, 54, 1.0)):
            fold3 = np.array([
                points[wing] + np.array([sign * 0.06, 0.0, -0.03]),
                0.5 * (points[wing] + points[corner]) + np.array([sign * 0.09, 0.0, -0.04]),
                points[corner] + np.array([sign * 0.06, 0.08, -0.03]),
            ])
            _line(ao, _curve(camera.px(fold3)), int(178 - 40 * smile), max(1.0, 0.025 * camera.unit))
        under = _ellipse_points(points[33] + np.array([0.0, 0.07, -0.02]), np.array([0.12, 0, 0]),
                                np.array([0, 0.05, 0]), 16)
        _fill(ao, camera.px(under), 170)

    def _mouth(self, layer: np.ndarray, ao: np.ndarray, camera: _Camera, points: np.ndarray) -> None:
        """Lips, the dark mouth interior with upper teeth when open, the lip line and chin/corner shadows."""
        p = camera.px(points)
        lip = self.params.lip_colour
        upper_outer = _curve(p[48:55], samples=4)
        lower_outer = _curve(p[[54, 55, 56, 57, 58, 59, 48]], samples=4)
        inner_upper = _curve(p[60:65], samples=4)
        inner_lower = _curve(p[[64, 65, 66, 67, 60]], samples=4)
        unit = camera.unit
        chin = _ellipse_points(0.55 * points[57] + 0.45 * points[8] + np.array([0, -0.02, 0.0]),
                               np.array([0.2, 0, 0]), np.array([0, 0.07, 0]), 16)
        _fill(ao, camera.px(chin), 178)
        _fill(layer, np.concatenate([upper_outer, inner_upper[::-1]]), lip * 0.86)  # faces down: darker
        _fill(layer, np.concatenate([lower_outer, inner_lower[::-1]]), lip)
        interior = np.concatenate([inner_upper, inner_lower[1:-1]])
        gap = np.linalg.norm(p[62] - p[66])
        if gap > 0.02 * unit:
            _fill(layer, interior, (55, 18, 24))
            x0, y0, x1, y1 = _bounds(interior, layer.shape[:2])
            if x1 > x0 and y1 > y0:
                roi = layer[y0:y1, x0:x1]
                patch = roi.copy()
                teeth3 = points[[60, 61, 62, 63, 64]]
                lower_edge = teeth3 + np.array([0.0, 0.075, -0.02])
                teeth = np.concatenate([_curve(camera.px(teeth3)), _curve(camera.px(lower_edge))[::-1]])
                _fill(patch, teeth - (x0, y0), (228, 222, 210))
                clip = np.zeros(roi.shape[:2], np.uint8)
                _fill(clip, interior - (x0, y0), 255)
                weight = clip.astype(np.float32)[..., None] / 255.0
                roi[:] = (patch * weight + roi * (1 - weight)).astype(np.uint8)
        _line(layer, inner_upper, lip * 0.45, max(1.0, 0.025 * unit))
        for corner in (48, 54):
            _fill(ao, camera.px(_ellipse_points(points[corner], np.array([0.03, 0, 0]),
                                                 np.array([0, 0.03, 0]), 10)), 150)

    def _front_hair(self, image: np.ndarray, camera: _Camera, colour: np.ndarray) -> None:
        """The front-facing part of the hair cap mesh, painted over the skull and forehead."""
        visible = (self.head.hair_normals @ camera.rotation.T)[:, 2] > -0.02
        quads = camera.px(self.head.hair_quads[visible])
        if not len(quads):
            return
        mask = np.zeros(image.shape[:2], np.uint8)
        # One aliased fill of the whole tiling: anti-aliased edges between adjacent quads would leave
        # seams. The mask is softened below and the frame is area-downsampled afterwards.
        cv2.fillPoly(mask, list(_fix(quads)), 255, cv2.LINE_8, _SHIFT)
        x0, y0, x1, y1 = _bounds(quads.reshape(-1, 2), mask.shape, margin=4)
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = cv2.GaussianBlur(mask[y0:y1, x0:x1], (0, 0), 0.7)
        _blend(image, mask, colour)


def _background(params: Identity, size: int) -> np.ndarray:
    """A static ``[size, size, 3]`` uint8 background: two-colour gradient plus an optional pattern."""
    rng = np.random.default_rng(params.background_seed)
    coords = (np.arange(size) + 0.5) / size * 2 - 1
    u, v = np.meshgrid(coords, coords)
    direction = np.array([math.cos(params.background_angle), math.sin(params.background_angle)])
    mix = np.clip((u * direction[0] + v * direction[1]) * 0.5 + 0.5, 0, 1)[..., None]
    first, second = params.background_colours
    image = first * (1 - mix) + second * mix
    if params.background == "stripes":
        period = rng.uniform(0.15, 0.5)
        angle = rng.uniform(0, math.pi)
        phase = (u * math.cos(angle) + v * math.sin(angle)) / period
        image *= (1 + 0.08 * np.sign(np.sin(2 * math.pi * phase)))[..., None]
    elif params.background == "blobs":
        layer = np.zeros((size, size), np.float64)
        for _ in range(rng.integers(4, 9)):
            centre = rng.uniform(-1, 1, 2)
            radius = rng.uniform(0.1, 0.35)
            layer += rng.uniform(-1, 1) * np.exp(-((u - centre[0]) ** 2 + (v - centre[1]) ** 2) / radius**2)
        image *= (1 + 0.15 * np.tanh(layer))[..., None]
    elif params.background == "checks":
        period = rng.uniform(0.25, 0.6)
        cells = (np.floor(u / period) + np.floor(v / period)) % 2
        image *= (1 + 0.06 * (cells * 2 - 1))[..., None]
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Public API


def render_video(
    identity: int | Identity,
    clip: int = 0,
    frames: int = 32,
    size: int = 128,
    seed: int = 0,
    fps: float = 25.0,
    supersample: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one clip without writing files.

    Args:
        identity: an identity index of the population of ``seed``, or an :class:`Identity`
            (its ``index`` then selects the trajectories).
        clip: clip index; each (identity, clip) pair has its own trajectory.
        frames: number of frames F.
        size: frame side in pixels.
        seed: population and trajectory seed.
        fps: frame rate the trajectories are timed for.
        supersample: drawing resolution multiple (default 2 from 96 px up, else 3).

    Returns:
        frames ``[F, size, size, 3]`` uint8 RGB, and the ground truth with the arrays of an annotation
        file: ``landmarks`` [F, 68, 2] pixels, ``pose`` [F, 3], ``translation`` [F, 2], ``scale`` [F],
        ``expression`` [F, E], ``identity_coeffs`` [I] (all float32) and ``identity`` (0-d str array).
    """
    person = identity if isinstance(identity, Identity) else sample_identity(seed, int(identity))
    trajectory = sample_trajectory(seed, person.index, clip, frames, fps)
    video, landmarks = Renderer(person, size, supersample).render(trajectory)
    truth = {
        "landmarks": to_pixels(landmarks, size).astype(np.float32),
        **{key: trajectory[key] for key in ("pose", "translation", "scale", "expression")},
        "identity_coeffs": person.coeffs.astype(np.float32),
        "identity": np.array(person.name),
    }
    return video, truth


def identity_dict(identity: Identity) -> dict[str, Any]:
    """JSON-friendly view of an identity (for reports and debugging)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(identity).items()}


# --------------------------------------------------------------------------------------------------
# Dataset files

ANNOTATIONS_README = """# Synthetic ground truth

Written by `reenact.data.synthetic.generate_dataset`. One `<video name>.npz` per video of each split
(`annotations/train/`, `annotations/test/`), named after the video: the file stem
(`id0003#clip01.mp4` -> `id0003#clip01.npz`) or the frame folder's name for PNG datasets. The part of
the name before `#` is the identity; identities never appear in both splits. F is the number of frames.

| array | dtype, shape | meaning |
|---|---|---|
| landmarks | float32 [F, 68, 2] | iBUG 300-W 68 landmarks (x, y), pixels of the written frames |
| pose | float32 [F, 3] | yaw, pitch, roll in degrees |
| translation | float32 [F, 2] | image position of the 3D model origin, normalized coordinates |
| scale | float32 [F] | weak-perspective scale: on-image size of one model unit, normalized coordinates |
| expression | float32 [F, E] | expression coefficients in [0, 1], names in `meta.json` `expression_names` |
| identity_coeffs | float32 [I] | 3D model identity coefficients, names in `meta.json` `identity_names` |
| identity | str, 0-d | identity name |

Pixel coordinates put pixel centres at integers, so a frame of side `size` spans [-0.5, size - 0.5].
Normalized coordinates span [-1, 1] across the image (x right, y down); one model unit is half a face
width.

Camera: `landmarks = to_pixels(scale * (R(pose) @ X)[:2] + translation, size)` for the model's 3D
landmarks `X = FaceModel3D().landmarks_3d(identity_coeffs, expression)`, with
`R = Rz(roll) @ Ry(yaw) @ Rx(pitch)`. Positive yaw turns the face toward the image right, positive
pitch looks up, positive roll turns the face clockwise in the image. Full conventions:
`reenact.face.model3d`.
"""

CONVENTIONS = {
    "landmarks": "iBUG 300-W 68 points, (x, y) pixels of the written frames, pixel centres at integer "
                 "coordinates (image spans [-0.5, size - 0.5])",
    "normalized_coordinates": "[-1, 1] from the outer edge of the first pixel to that of the last "
                              "(grid_sample align_corners=False); x right, y down",
    "projection": "weak perspective: x2d = scale * (R @ X)[:2] + translation, normalized coordinates",
    "rotation": "R = Rz(roll) @ Ry(yaw) @ Rx(pitch), degrees; +yaw turns the face toward the image right, "
                "+pitch looks up, +roll rotates the face clockwise in the image",
    "model": "reenact.face.model3d.FaceModel3D: x right, y down, z toward the camera, unit = half face width",
}


def _split_identities(count: int, test_fraction: float) -> tuple[list[int], list[int]]:
    """Identity indices of the train and test splits (the test split takes the last ones)."""
    test = int(round(count * test_fraction))
    if count >= 4:
        test = max(test, 2)  # the cross-identity protocol needs two test identities
    elif count >= 2:
        test = max(test, 1)  # a test split of its own, even for tiny datasets
    test = min(test, count - 1) if count > 1 else 0
    return list(range(count - test)), list(range(count - test, count))


def _write_video_job(job: tuple) -> str:
    """Render one video and write it plus its annotation into the staging folder (pool worker)."""
    staging, split, index, clip, frames, size, seed, fps, video_format = job
    video, truth = render_video(index, clip, frames, size, seed, fps)
    name = f"{truth['identity']}#clip{clip:02d}"
    if video_format == "mp4":
        write_video(Path(staging) / split / f"{name}.mp4", video, fps=fps)
    else:
        write_frame_folder(Path(staging) / split / name, video)
    annotation = Path(staging) / "annotations" / split / f"{name}.npz"
    with atomic_path(annotation) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **truth)
    return name


def _worker_init() -> None:
    # Each worker renders whole videos; nested thread pools would only fight over the same cores.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def generate_dataset(
    root: str | Path,
    *,
    videos: int = DEFAULT_ARGS["videos"],
    frames: int = DEFAULT_ARGS["frames"],
    size: int = DEFAULT_ARGS["size"],
    seed: int = DEFAULT_ARGS["seed"],
    test_fraction: float = DEFAULT_ARGS["test_fraction"],
    clips_per_identity: int = DEFAULT_ARGS["clips_per_identity"],
    video_format: str = "mp4",
    fps: float = DEFAULT_ARGS["fps"],
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """Write a synthetic dataset in the FOMM layout with per-video ground truth; returns ``root``.

    Identities ``id0000, id0001, ...`` get ``clips_per_identity`` clips each (``<identity>#clipNN``);
    the last ``round(identities * test_fraction)`` identities (at least two from four identities on,
    at least one from two) form the test split. Videos are H.264 ``.mp4`` or PNG frame folders
    (``video_format="png"``, lossless). Everything is built in a temporary folder beside ``root`` and
    renamed into place once ``meta.json`` (written last) is there, so an interrupted run leaves
    nothing that looks complete. ``root`` must not exist or must be empty.

    ``workers`` processes render in parallel (default: up to the CPU count for jobs big enough to
    repay starting them, else in-process); the output does not depend on it.
    """
    root = Path(root)
    if videos < 2 or frames < 2 or size < 16:
        raise ValueError(f"need videos >= 2, frames >= 2, size >= 16 (got {videos}, {frames}, {size})")
    if video_format not in ("mp4", "png"):
        raise ValueError(f"video_format must be 'mp4' or 'png', not {video_format!r}")
    if clips_per_identity < 1:
        raise ValueError(f"clips_per_identity must be >= 1, got {clips_per_identity}")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty")
    identities = math.ceil(videos / clips_per_identity)
    train_ids, test_ids = _split_identities(identities, test_fraction)
    plan = [
        ("test" if index in test_ids else "train", index, clip)
        for index in range(identities)
        for clip in range(clips_per_identity)
    ][:videos]
    if workers is None:
        # ~5 ms per 128 px frame on one core, while a spawned worker spends seconds importing torch:
        # the default dataset (~7 s) builds faster in-process.
        seconds = videos * frames * (size / 128) ** 2 * 0.005
        workers = min(os.cpu_count() or 1, 8, videos) if seconds > 60 else 1
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for split in ("train", "test"):
            (staging / split).mkdir()
            (staging / "annotations" / split).mkdir(parents=True)
        jobs = [(str(staging), split, index, clip, frames, size, seed, fps, video_format)
                for split, index, clip in plan]
        from rich.progress import Progress

        with Progress(disable=not progress, transient=False) as bar:
            task = bar.add_task(f"synthesising {len(jobs)} videos", total=len(jobs))
            if workers > 1:
                import multiprocessing

                # spawn, not fork: the parent may already run torch/OpenMP threads, which fork can deadlock.
                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
                    for _ in pool.map(_write_video_job, jobs):
                        bar.advance(task)
            else:
                for job in jobs:
                    _write_video_job(job)
                    bar.advance(task)
        (staging / "annotations" / "README.md").write_text(ANNOTATIONS_README)
        model = face_model()
        names = {split: [f"{identity_name(i)}#clip{c:02d}" for s, i, c in plan if s == split]
                 for split in ("train", "test")}
        meta = {
            "generator": "reenact.data.synthetic",
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "args": {"videos": videos, "frames": frames, "size": size, "seed": seed, "test_fraction": test_fraction,
                     "clips_per_identity": clips_per_identity, "video_format": video_format, "fps": fps},
            "expression_names": list(model.expression_names),
            "identity_names": list(model.identity_names),
            "conventions": CONVENTIONS,
            "counts": {"train": len(names["train"]), "test": len(names["test"]),
                       "train_identities": len(train_ids), "test_identities": len(test_ids),
                       "frames_per_video": frames},
            "videos": names,
        }
        with atomic_path(staging / "meta.json") as temporary:
            temporary.write_text(json.dumps(meta, indent=2) + "\n")
        if root.exists():
            root.rmdir()
        os.chmod(staging, umask_mode(directory=True))
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root


def cache_dir() -> Path:
    """``$REENACT_CACHE`` or ``~/.cache/reenact``."""
    return Path(os.environ.get("REENACT_CACHE") or Path.home() / ".cache" / "reenact").expanduser()


def default_dataset_root() -> Path:
    """``<cache>/synthetic/<hash>``: the hash covers :data:`DEFAULT_ARGS` and :data:`GENERATOR_VERSION`."""
    key = json.dumps({"version": GENERATOR_VERSION, **DEFAULT_ARGS}, sort_keys=True)
    return cache_dir() / "synthetic" / hashlib.sha1(key.encode()).hexdigest()[:12]


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes (a no-op where ``fcntl`` is unavailable)."""
    try:
        import fcntl
    except ImportError:  # Windows: generate_dataset's build-then-rename still keeps the root consistent
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_default_dataset(progress: bool = True) -> Path:
    """Build the default dataset once and return its root (:func:`default_dataset_root`).

    Safe when several processes ask at once (e.g. DDP ranks): one builds under a file lock, the others
    wait for it and then find ``meta.json``.
    """
    root = default_dataset_root()
    if (root / "meta.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(root.parent / f".{root.name}.lock"):
        if not (root / "meta.json").is_file():
            if root.exists():
                shutil.rmtree(root)  # an incomplete build: no meta.json
            generate_dataset(root, progress=progress, **DEFAULT_ARGS)
    return root


# --------------------------------------------------------------------------------------------------
# Detectability


def dlib_detection_rate(frames: np.ndarray, upsample_to: int = 256) -> float:
    """Fraction of frames ``[N, H, W, 3]`` uint8 in which dlib's HOG frontal detector finds a face.

    Frames smaller than ``upsample_to`` are resized up first (bicubic), as the evaluation does.
    """
    analyzer = DlibFaceAnalyzer(upsample=1)
    found = 0
    for frame in frames:
        if frame.shape[0] < upsample_to:
            frame = cv2.resize(frame, (upsample_to, upsample_to), interpolation=cv2.INTER_CUBIC)
        found += bool(analyzer.detect(frame))
    return found / max(1, len(frames))


def measure_dlib(
    identities: int = 60, frames_per_identity: int = 10, size: int = 256, seed: int = 1000, evaluate_at: int = 256
) -> dict[str, float]:
    """Detection rate and landmark error of dlib on synthetic frames.

    Identity ``i`` contributes ``frames_per_identity`` evenly spaced frames of its clip ``i % 3``
    (32-frame clips; poses cover the whole :data:`POSE_LIMITS` range over the identities). Frames
    smaller than ``evaluate_at`` are upsampled (bicubic) first. Returns ``detection_rate``,
    ``frames``, ``landmark_error_px`` (mean distance between dlib's 68 points and the ground truth,
    pixels at ``evaluate_at``, over detected frames) and ``nme`` (the same per frame divided by the
    distance between the eye centres).
    """
    analyzer = DlibFaceAnalyzer(upsample=1)
    found, total, errors, nmes = 0, 0, [], []
    steps = np.linspace(0, 31, frames_per_identity).round().astype(int)
    for index in range(identities):
        video, truth = render_video(index, index % 3, 32, size, seed)
        for step in steps:
            image, points = video[step], truth["landmarks"][step].astype(np.float64)
            if size != evaluate_at:
                image = cv2.resize(image, (evaluate_at, evaluate_at), interpolation=cv2.INTER_CUBIC)
                points = (points + 0.5) * evaluate_at / size - 0.5
            total += 1
            result = analyzer.largest_face(image)
            if result is None:
                continue
            found += 1
            distance = np.linalg.norm(result[1] - points, axis=1).mean()
            errors.append(distance)
            nmes.append(distance / np.linalg.norm(points[36:42].mean(0) - points[42:48].mean(0)))
    return {
        "detection_rate": found / max(total, 1),
        "frames": total,
        "landmark_error_px": float(np.mean(errors)) if errors else float("nan"),
        "nme": float(np.mean(nmes)) if nmes else float("nan"),
    }
