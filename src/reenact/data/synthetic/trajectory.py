"""Synthetic clip trajectories: head pose, position, scale and expression over time (see the package
docstring for what moves how much)."""

from __future__ import annotations

import math

import numpy as np

from reenact.data.synthetic.identity import _rng, face_model

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


