"""Training augmentation as in FOMM/FSRT: horizontal flip and colour jitter, shared by all frames of a sample.

One sample (its source and driving frames together) gets one set of random parameters, drawn from a
``numpy.random.Generator`` the dataset derives from ``(seed, epoch, index)``: the result is the same in the
main process, in any DataLoader worker and on any DDP rank.

Coordinate convention: landmark ``(x, y)`` are pixel coordinates with the centre of the top-left pixel at
``(0, 0)`` and of the bottom-right pixel at ``(W - 1, H - 1)``. A horizontal flip maps ``x`` to ``W - 1 - x``
and renumbers the 68 iBUG points left <-> right (:data:`IBUG68_FLIP`), so that point 36 is still the outer
corner of the subject's right eye after flipping. Pose angles are ``(yaw, pitch, roll)`` in degrees; the flip
negates yaw and roll. Expression coefficients are not flipped (3DMM expression bases are not mirror-symmetric
in general); models that need flip-equivariant expressions should train with ``augment=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

__all__ = ["AUGMENT_MODES", "IBUG68_FLIP", "AugmentConfig", "AugmentParams", "apply_augment", "augment_config",
           "flip_landmarks", "flip_pose", "sample_params"]


def _ibug68_flip() -> tuple[int, ...]:
    # Pairs of mirrored iBUG-68 points; points on the vertical midline (nose bridge 27-30, nose tip 33,
    # mouth 51, 57, 62, 66) map to themselves.
    pairs = [(i, 16 - i) for i in range(8)]                       # jaw line
    pairs += [(17 + i, 26 - i) for i in range(5)]                 # eyebrows
    pairs += [(31, 35), (32, 34)]                                 # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]   # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]                       # inner lips
    permutation = list(range(68))
    for a, b in pairs:
        permutation[a], permutation[b] = b, a
    return tuple(permutation)


IBUG68_FLIP: tuple[int, ...] = _ibug68_flip()
"""``flipped[i] = original[IBUG68_FLIP[i]]`` (with x mirrored) keeps every iBUG-68 index's meaning."""


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths (FOMM's defaults: flip, and jitter of 0.1 on every colour property).

    Attributes:
        flip_probability: chance of a horizontal flip per sample.
        brightness, contrast, saturation: factors are drawn uniformly from ``[1 - v, 1 + v]``.
        hue: hue shift drawn uniformly from ``[-hue, hue]`` (fraction of the colour circle, at most 0.5).
    """

    flip_probability: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1
    hue: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip_probability <= 1.0:
            raise ValueError(f"flip_probability must be in [0, 1], got {self.flip_probability}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")


#: ``augment`` modes of the DataModule (``True``/``False`` are ``"full"``/``"none"``).
AUGMENT_MODES = ("full", "flip", "none")


def augment_config(mode: bool | str | AugmentConfig | None) -> AugmentConfig | None:
    """The DataModule's ``augment`` option as a config: ``True``/``"full"`` FOMM's flip + jitter, ``"flip"`` the
    flip alone, ``False``/``"none"``/``None`` nothing; an :class:`AugmentConfig` is used as given.

    Raises:
        ValueError: any other value, naming the modes.
    """
    if isinstance(mode, AugmentConfig) or mode is None:
        return mode
    if mode is True or mode == "full":
        return AugmentConfig()
    if mode is False or mode == "none":
        return None
    if mode == "flip":
        return AugmentConfig(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0)
    raise ValueError(f"augment must be true, false or one of {', '.join(AUGMENT_MODES)}; got {mode!r}")


@dataclass(frozen=True)
class AugmentParams:
    """The random draw for one sample: flip or not, the four jitter factors and the order they apply in."""

    flip: bool
    brightness: float
    contrast: float
    saturation: float
    hue: float
    order: tuple[int, ...]


def sample_params(config: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw one sample's parameters from ``rng`` (always the same number of draws, whatever the config)."""
    flip = bool(rng.random() < config.flip_probability)
    brightness, contrast, saturation = (
        float(rng.uniform(1.0 - v, 1.0 + v)) for v in (config.brightness, config.contrast, config.saturation)
    )
    hue = float(rng.uniform(-config.hue, config.hue))
    order = tuple(int(i) for i in rng.permutation(4))
    return AugmentParams(flip, brightness, contrast, saturation, hue, order)


def flip_landmarks(landmarks: torch.Tensor, width: int) -> torch.Tensor:
    """Mirror iBUG-68 landmarks ``[..., 68, 2]`` (pixels of a ``width``-wide frame): x -> W-1-x, swapped."""
    flipped = landmarks[..., list(IBUG68_FLIP), :].clone()
    flipped[..., 0] = (width - 1) - flipped[..., 0]
    return flipped


def flip_pose(pose: torch.Tensor) -> torch.Tensor:
    """Mirror ``[..., 3]`` (yaw, pitch, roll) degrees: yaw and roll change sign, pitch stays."""
    return pose * pose.new_tensor([-1.0, 1.0, -1.0])


def _jitter(frames: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    if (params.brightness, params.contrast, params.saturation, params.hue) == (1.0, 1.0, 1.0, 0.0):
        return frames  # no jitter ("flip" mode): skip the colour-space round trips, frames stay bit-exact
    for step in params.order:
        if step == 0:
            frames = TF.adjust_brightness(frames, params.brightness)
        elif step == 1:
            frames = TF.adjust_contrast(frames, params.contrast)
        elif step == 2:
            frames = TF.adjust_saturation(frames, params.saturation)
        else:
            frames = TF.adjust_hue(frames, params.hue)
    return frames.clamp_(0.0, 1.0)


def apply_augment(sample: dict, params: AugmentParams) -> dict:
    """Apply one draw to every frame of ``sample`` in place and return it.

    ``sample["source"]`` ``[S, 3, H, W]`` and ``sample["driving"]`` ``[T, 3, H, W]`` are float in [0, 1];
    optional ``*_landmarks`` ``[., 68, 2]`` (pixels of the H x W frame) and ``*_pose`` ``[., 3]`` follow
    the flip.
    Source and driving are jittered as one stack so they share exactly the same colour transform.
    """
    source, driving = sample["source"], sample["driving"]
    frames = torch.cat([source, driving], dim=0)
    if params.flip:
        frames = frames.flip(-1)
        width = frames.shape[-1]
        for role in ("source", "driving"):
            if f"{role}_landmarks" in sample:
                sample[f"{role}_landmarks"] = flip_landmarks(sample[f"{role}_landmarks"], width)
            if f"{role}_pose" in sample:
                sample[f"{role}_pose"] = flip_pose(sample[f"{role}_pose"])
    frames = _jitter(frames, params)
    sample["source"], sample["driving"] = frames[: source.shape[0]], frames[source.shape[0]:]
    return sample
