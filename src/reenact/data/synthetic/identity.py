"""Synthetic identities: face-model coefficients, palettes and styles drawn from ``(seed, index)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from reenact.face.model3d import FaceModel3D

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


