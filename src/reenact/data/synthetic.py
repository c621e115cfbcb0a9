"""Synthetic talking heads with ground truth: the project's embedded default dataset.

Every video shows one synthetic identity (face shape from :class:`reenact.face.model3d.FaceModel3D`,
skin tone, hair, eye, brow and lip colours, clothing, background) moving along a smooth "talking"
trajectory: head pose (yaw about ±30°, pitch ±20°, roll ±15°), small translation and scale changes,
and expressions (jaw opening in a syllable rhythm, blinks, smiles, brow raises, lip pucker). Everything
is deterministic from ``(seed, identity, clip)``.

Rendering draws a shaded face from the projected 68 landmarks plus a forehead and hair outline taken
from the same 3D model, supersampled and anti-aliased. It reads enough like a face that dlib's HOG
frontal detector finds one in almost every frame at 256 px (see :func:`dlib_detection_rate`; the
measured rate and the command are in ``src/reenact/data/README.md``).

Dataset layout written by :func:`generate_dataset` (the FOMM layout, so the real loading path is what
gets exercised)::

    root/train/<identity>#<clip>.mp4      (or a folder of PNG frames with video_format="png")
    root/test/<identity>#<clip>.mp4       identities disjoint from train
    root/annotations/<split>/<video>.npz  per-video ground truth, documented in annotations/README.md
    root/meta.json                        written last: its presence marks a complete dataset

Ground-truth arrays per video: ``landmarks`` float32 [F, 68, 2] in pixels of the written frames (pixel
centres at integer coordinates), ``pose`` float32 [F, 3] yaw/pitch/roll degrees, ``translation``
float32 [F, 2] and ``scale`` float32 [F] (normalized image units, see ``reenact.face.model3d``),
``expression`` float32 [F, E] (``meta.json: expression_names``), ``identity_coeffs`` float32 [I],
``identity`` 0-d str.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from reenact.data.video import atomic_path, write_frame_folder, write_video
from reenact.face.model3d import FaceModel3D, to_pixels

GENERATOR_VERSION = 1
#: Pose ranges of the talking trajectories, degrees (yaw, pitch, roll).
POSE_LIMITS = (30.0, 20.0, 15.0)
#: The default dataset: 40 videos (16 train + 4 test identities, 2 clips each), 32 frames, 128 px.
DEFAULT_ARGS: dict[str, Any] = {"videos": 40, "frames": 32, "size": 128, "seed": 0, "test_fraction": 0.2,
                                "clips_per_identity": 2, "video_format": "mp4", "fps": 25.0}

_MODEL: FaceModel3D | None = None


def face_model() -> FaceModel3D:
    """The shared 3D landmark model, built once per process."""
    global _MODEL
    if _MODEL is None:
        _MODEL = FaceModel3D()
    return _MODEL


# ------------------------------------------------------------------------------------------ identities
@dataclass
class Identity:
    """Appearance of one synthetic person. Colours are RGB in [0, 255]."""

    name: str
    coeffs: np.ndarray          # [I] identity coefficients of the face model, in standard deviations
    skin: np.ndarray            # [3]
    hair: np.ndarray            # [3]
    hair_volume: float          # how far hair extends beyond the skull outline, in model units
    iris: np.ndarray            # [3]
    brow: np.ndarray            # [3]
    lips: np.ndarray            # [3]
    shirt: np.ndarray           # [3]
    background: np.ndarray      # [2, 3] top and bottom colours of a vertical gradient
    light: float                # horizontal light direction in [-1, 1]


_SKIN_TONES = np.array([[255, 224, 196], [241, 194, 160], [224, 172, 135], [198, 134, 98], [161, 102, 70],
                        [120, 76, 52], [236, 188, 150]], dtype=np.float64)
_HAIR = np.array([[30, 24, 20], [60, 40, 28], [110, 72, 40], [170, 130, 80], [200, 170, 120], [120, 120, 120],
                  [90, 30, 20], [20, 20, 30]], dtype=np.float64)
_IRIS = np.array([[70, 45, 25], [40, 90, 140], [60, 110, 70], [100, 80, 50], [30, 30, 30]], dtype=np.float64)


def sample_identity(seed: int, index: int) -> Identity:
    """Identity ``index`` of the population drawn with ``seed`` (any non-negative index)."""
    rng = np.random.default_rng([seed, index, 1])
    model = face_model()
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.9, 1.05) + rng.normal(0, 6, 3)
    hair = _HAIR[rng.integers(len(_HAIR))] + rng.normal(0, 8, 3)
    background_hue = rng.uniform(0, 255, 3)
    background = np.stack([background_hue, background_hue * rng.uniform(0.5, 0.9)])
    # Keep the face distinguishable from the background: push the background away from the skin tone.
    if np.abs(background.mean(0) - skin).mean() < 50:
        background = 255 - background
    return Identity(
        name=f"id{index:04d}",
        coeffs=np.clip(rng.normal(0, 1, model.identity_dim), -2.5, 2.5),
        skin=np.clip(skin, 0, 255), hair=np.clip(hair, 0, 255), hair_volume=float(rng.uniform(0.05, 0.35)),
        iris=np.clip(_IRIS[rng.integers(len(_IRIS))] + rng.normal(0, 8, 3), 0, 255),
        brow=np.clip(hair * 0.6 + rng.normal(0, 5, 3), 0, 255),
        lips=np.clip(skin * np.array([0.85, 0.5, 0.5]) + rng.normal(0, 8, 3), 0, 255),
        shirt=rng.uniform(20, 235, 3), background=np.clip(background, 0, 255),
        light=float(rng.uniform(-1, 1)),
    )


# ---------------------------------------------------------------------------------------- trajectories
def _smooth_signal(rng: np.random.Generator, time: np.ndarray, limit: float, frequencies: tuple[float, float],
                   components: int = 3) -> np.ndarray:
    """A sum of sinusoids with random frequencies and phases, scaled so its peak stays within ``±limit``."""
    signal = np.zeros_like(time)
    for _ in range(components):
        phase = rng.uniform(0, 2 * np.pi)
        signal += rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(*frequencies) * time + phase)
    peak = np.abs(signal).max() if signal.size else 1.0
    return signal / max(peak, 1e-6) * limit * rng.uniform(0.6, 1.0)


def sample_trajectory(seed: int, index: int, clip: int, frames: int, fps: float = 25.0) -> dict[str, np.ndarray]:
    """Pose ``[F, 3]`` degrees, translation ``[F, 2]``, scale ``[F]`` and expression ``[F, E]`` of one clip."""
    rng = np.random.default_rng([seed, index, clip, 2])
    time = np.arange(frames) / fps
    model = face_model()
    pose = np.stack([_smooth_signal(rng, time, limit, (0.15, 0.9)) for limit in POSE_LIMITS], 1)
    translation = np.stack([_smooth_signal(rng, time, 0.05, (0.1, 0.5)) for _ in range(2)], 1)
    translation[:, 1] += 0.04  # leave room for the hair above the head
    scale = rng.uniform(0.40, 0.46) + _smooth_signal(rng, time, 0.02, (0.1, 0.4))

    names = model.expression_names
    expression = np.zeros((frames, len(names)))
    # Speech: syllables at 3-5 Hz under a slower envelope of words and pauses.
    syllables = np.maximum(0, np.sin(2 * np.pi * rng.uniform(3, 5) * time + rng.uniform(0, 2 * np.pi)))
    envelope = np.clip(0.6 + _smooth_signal(rng, time, 0.6, (0.3, 1.0)), 0, 1)
    expression[:, names.index("jaw_open")] = np.clip(rng.uniform(0.5, 1.0) * syllables ** 1.5 * envelope, 0, 1)
    expression[:, names.index("smile")] = np.clip(_smooth_signal(rng, time, 0.8, (0.1, 0.5)) + 0.2, 0, 1)
    expression[:, names.index("brow_raise")] = np.clip(_smooth_signal(rng, time, 0.9, (0.2, 0.8)), 0, 1)
    expression[:, names.index("brow_lower")] = np.clip(_smooth_signal(rng, time, 0.6, (0.2, 0.8)), 0, 1)
    expression[:, names.index("lip_pucker")] = np.clip(_smooth_signal(rng, time, 0.7, (0.2, 0.8)), 0, 1)
    # Blinks: both eyes, a 5-frame close-open, every 2-4 s, sometimes one eye alone (a wink).
    blink = np.zeros(frames)
    wink = np.zeros(frames)
    start = rng.integers(0, max(1, int(fps)))
    while start < frames:
        shape = np.array([0.4, 0.9, 1.0, 0.9, 0.4])
        target = wink if rng.uniform() < 0.15 else blink
        stop = min(frames, start + len(shape))
        target[start:stop] = np.maximum(target[start:stop], shape[: stop - start])
        start += int(rng.uniform(2, 4) * fps)
    expression[:, names.index("blink_left")] = np.clip(blink + wink, 0, 1)
    expression[:, names.index("blink_right")] = blink
    return {"pose": pose.astype(np.float32), "translation": translation.astype(np.float32),
            "scale": scale.astype(np.float32), "expression": expression.astype(np.float32)}


# -------------------------------------------------------------------------------------------- geometry
def _outline_points(shape: np.ndarray) -> dict[str, np.ndarray]:
    """Forehead, skull and neck points ``[N, 3]`` in canonical coordinates, fitted to one face's landmarks.

    The 68 landmarks stop at the brows; a face needs a forehead and hair above them, and a neck below.
    These come from the same identity's jaw width and brow height, so they move rigidly with the head.
    """
    left, right = shape[0], shape[16]
    centre_x = (left[0] + right[0]) / 2
    half_width = (right[0] - left[0]) / 2
    ear_y = (left[1] + right[1]) / 2
    brow_y = shape[17:27, 1].min()
    top = brow_y - 0.55 * half_width
    angles = np.linspace(0, np.pi, 15)
    forehead = np.stack([centre_x - half_width * 0.98 * np.cos(angles),
                         ear_y - (ear_y - top) * np.sin(angles),
                         left[2] + (0.15 - left[2]) * np.sin(angles)], 1)
    hairline = forehead.copy()
    hairline[:, 1] = ear_y - (ear_y - top + 0.02) * np.sin(angles) ** 0.8
    hairline[:, 1] = np.minimum(hairline[:, 1], ear_y - 0.25)
    skull = np.stack([centre_x - 1.08 * half_width * np.cos(angles),
                      ear_y + 0.15 - (ear_y + 0.15 - (top - 0.22)) * np.sin(angles),
                      np.full_like(angles, -0.5)], 1)
    chin_y = shape[8, 1]
    top_half, bottom_half = 0.55 * half_width, 0.65 * half_width
    neck = np.array([[centre_x - top_half, chin_y - 0.4, -0.6], [centre_x + top_half, chin_y - 0.4, -0.6],
                     [centre_x + bottom_half, chin_y + 1.0, -0.6], [centre_x - bottom_half, chin_y + 1.0, -0.6]])
    return {"forehead": forehead, "hairline": hairline, "skull": skull, "neck": neck}


# ------------------------------------------------------------------------------------------- rendering
def _poly(points: np.ndarray) -> np.ndarray:
    """Pixel coordinates -> int32 polygon with 4 fractional bits (cv2 ``shift=4``) for sub-pixel drawing."""
    return np.round(points * 16).astype(np.int32).reshape(-1, 1, 2)


def _colour(rgb: np.ndarray, factor: float = 1.0) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(np.asarray(rgb) * factor, 0, 255))


def render_frame(identity: Identity, landmarks: np.ndarray, outline: dict[str, np.ndarray], size: int,
                 supersample: int = 2) -> np.ndarray:
    """Draw one frame.

    Args:
        identity: appearance.
        landmarks: ``[68, 2]`` landmark pixels of the ``size``×``size`` output frame.
        outline: ``forehead``/``hairline``/``skull``/``neck`` pixel points ``[N, 2]`` from :func:`_outline_points`.
        size: output side in pixels.
        supersample: render at this multiple of the size, then area-downsample (anti-aliasing).

    Returns:
        ``[size, size, 3]`` uint8 RGB.
    """
    ss = supersample
    big = size * ss
    # Pixel centres at integer coordinates: a point x in the output maps to (x + 0.5) * ss - 0.5 in the big frame.
    lm = (landmarks + 0.5) * ss - 0.5
    out = {k: (v + 0.5) * ss - 0.5 for k, v in outline.items()}
    face_width = float(np.linalg.norm(lm[16] - lm[0]))
    aa = cv2.LINE_AA

    gradient = np.linspace(0, 1, big)[:, None, None]
    image = (identity.background[0] * (1 - gradient) + identity.background[1] * gradient).repeat(big, 1)
    image = np.ascontiguousarray(image.astype(np.float32))

    # Back to front: hair mass, neck and shoulders, face, hairline, features.
    skull_hull = cv2.convexHull(np.concatenate([out["skull"], lm[[0, 16]]]).astype(np.float32))[:, 0]
    hair_extra = identity.hair_volume * face_width * 0.5
    centre = skull_hull.mean(0)
    hair_polygon = centre + (skull_hull - centre) * (1 + hair_extra / max(face_width, 1))
    cv2.fillPoly(image, [_poly(hair_polygon)], _colour(identity.hair), aa, 4)
    shoulders_y = out["neck"][2:, 1].mean()
    cv2.ellipse(image, (int(out["neck"][:, 0].mean()), int(shoulders_y + face_width * 0.45)),
                (int(face_width * 1.1), int(face_width * 0.6)), 0, 0, 360, _colour(identity.shirt), -1, aa)
    cv2.fillPoly(image, [_poly(out["neck"])], _colour(identity.skin, 0.78), aa, 4)

    face_outline = cv2.convexHull(np.concatenate([lm[:17], out["forehead"]]).astype(np.float32))[:, 0]
    mask = np.zeros((big, big), np.uint8)
    cv2.fillPoly(mask, [_poly(face_outline)], 255, aa, 4)
    # Shading: darker towards the face border and on the side away from the light.
    inside = cv2.distanceTransform((mask > 127).astype(np.uint8), cv2.DIST_L2, 5)
    depth = np.clip(inside / (0.28 * face_width + 1e-6), 0, 1) ** 0.6
    xs = (np.arange(big, dtype=np.float32)[None, :] - face_outline[:, 0].mean()) / (face_width + 1e-6)
    light = np.clip(1 + 0.25 * identity.light * xs * 2, 0.75, 1.2)
    shade = (0.72 + 0.28 * depth) * light
    alpha = (mask.astype(np.float32) / 255)[:, :, None]
    skin = identity.skin.astype(np.float32)[None, None, :] * shade[:, :, None]
    image = image * (1 - alpha) + np.clip(skin, 0, 255) * alpha

    hair_cap = np.concatenate([out["forehead"], out["hairline"][::-1]])
    cv2.fillPoly(image, [_poly(hair_cap)], _colour(identity.hair), aa, 4)

    # Eye sockets: a soft shadow so the eyes read at low resolution.
    for eye in (lm[36:42], lm[42:48]):
        centre = eye.mean(0)
        width = np.linalg.norm(eye[3] - eye[0])
        cv2.ellipse(image, _poly(centre)[0, 0].tolist(), (int(width * 0.75 * 16), int(width * 0.5 * 16)), 0, 0, 360,
                    _colour(identity.skin, 0.7), -1, aa, 4)
    # Brows.
    brow_thickness = max(2, int(face_width * 0.045))
    for brow in (lm[17:22], lm[22:27]):
        cv2.polylines(image, [_poly(brow)], False, _colour(identity.brow), brow_thickness, aa, 4)
    # Eyes: sclera, iris clipped to the lid opening, pupil, lash line.
    for eye in (lm[36:42], lm[42:48]):
        eye_mask = np.zeros((big, big), np.uint8)
        cv2.fillPoly(eye_mask, [_poly(eye)], 255, aa, 4)
        layer = image.copy()
        cv2.fillPoly(layer, [_poly(eye)], (235, 232, 225), aa, 4)
        width = float(np.linalg.norm(eye[3] - eye[0]))
        centre = eye.mean(0)
        cv2.circle(layer, _poly(centre)[0, 0].tolist(), int(width * 0.24 * 16), _colour(identity.iris), -1, aa, 4)
        cv2.circle(layer, _poly(centre)[0, 0].tolist(), int(width * 0.11 * 16), (10, 10, 10), -1, aa, 4)
        eye_alpha = (eye_mask.astype(np.float32) / 255)[:, :, None]
        image = image * (1 - eye_alpha) + layer * eye_alpha
        cv2.polylines(image, [_poly(eye[[0, 1, 2, 3]])], False, (25, 20, 20), max(1, int(face_width * 0.018)), aa, 4)
    # Nose: bridge highlight, base shadow, nostrils.
    cv2.polylines(image, [_poly(lm[27:31])], False, _colour(identity.skin, 1.12), max(1, int(face_width * 0.03)), aa, 4)
    cv2.polylines(image, [_poly(lm[31:36])], False, _colour(identity.skin, 0.6), max(1, int(face_width * 0.025)), aa, 4)
    for nostril in (lm[32], lm[34]):
        cv2.circle(image, _poly(nostril)[0, 0].tolist(), int(face_width * 0.018 * 16) + 1, (40, 25, 25), -1, aa, 4)
    # Mouth: lips, then the dark opening between the inner lips.
    cv2.fillPoly(image, [_poly(lm[48:60])], _colour(identity.lips), aa, 4)
    cv2.fillPoly(image, [_poly(lm[60:68])], (45, 12, 18), aa, 4)
    cv2.polylines(image, [_poly(lm[60:65])], False, _colour(identity.lips, 0.6), max(1, int(face_width * 0.012)), aa, 4)

    image = cv2.resize(np.clip(image, 0, 255), (size, size), interpolation=cv2.INTER_AREA)
    return np.round(image).astype(np.uint8)


def render_video(identity_index: int, clip: int, frames: int, size: int, seed: int = 0, fps: float = 25.0,
                 supersample: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one clip without writing files.

    Returns:
        frames ``[F, size, size, 3]`` uint8 RGB, and the ground truth: ``landmarks`` [F, 68, 2] pixels,
        ``pose`` [F, 3], ``translation`` [F, 2], ``scale`` [F], ``expression`` [F, E], ``identity_coeffs`` [I],
        ``identity`` (0-d str array).
    """
    identity = sample_identity(seed, identity_index)
    trajectory = sample_trajectory(seed, identity_index, clip, frames, fps)
    model = face_model()
    supersample = supersample or (4 if size <= 96 else 2)
    with torch.no_grad():
        coeffs = torch.as_tensor(identity.coeffs, dtype=torch.float64)
        expression = torch.as_tensor(trajectory["expression"], dtype=torch.float64)
        shapes = model.landmarks_3d(coeffs.expand(frames, -1), expression)
        neutral = model.landmarks_3d(coeffs, torch.zeros(model.expression_dim, dtype=torch.float64)).numpy()
        outline = {k: torch.as_tensor(v) for k, v in _outline_points(neutral).items()}
        pose = torch.as_tensor(trajectory["pose"], dtype=torch.float64)
        translation = torch.as_tensor(trajectory["translation"], dtype=torch.float64)
        scale = torch.as_tensor(trajectory["scale"], dtype=torch.float64)
        landmarks = to_pixels(model.project(shapes, pose, translation, scale), size).numpy()
        projected_outline = {
            k: to_pixels(model.project(v.expand(frames, -1, -1), pose, translation, scale), size).numpy()
            for k, v in outline.items()
        }
    video = np.stack([
        render_frame(identity, landmarks[f], {k: v[f] for k, v in projected_outline.items()}, size, supersample)
        for f in range(frames)
    ])
    truth = {
        "landmarks": landmarks.astype(np.float32), **trajectory,
        "identity_coeffs": identity.coeffs.astype(np.float32), "identity": np.array(identity.name),
    }
    return video, truth


# ---------------------------------------------------------------------------------------------- dataset
ANNOTATIONS_README = """# Synthetic ground truth

One `<video name>.npz` per video of the split (video name = file stem, or folder name for PNG folders):

| array | dtype, shape | meaning |
|---|---|---|
| landmarks | float32 [F, 68, 2] | iBUG 68 landmarks (x, y), pixels of the written frames, pixel centres at integers |
| pose | float32 [F, 3] | yaw, pitch, roll in degrees (conventions in `reenact.face.model3d`) |
| translation | float32 [F, 2] | image position of the 3D model origin, normalized coordinates in [-1, 1] |
| scale | float32 [F] | weak-perspective scale (size of one model unit, normalized coordinates) |
| expression | float32 [F, E] | expression coefficients, names in `meta.json: expression_names` |
| identity_coeffs | float32 [I] | identity coefficients of the 3D face model (standard deviations) |
| identity | str, 0-d | identity name (the part of the video name before `#`) |
"""


def _split_identities(count: int, test_fraction: float) -> tuple[list[int], list[int]]:
    test = int(round(count * test_fraction))
    if count >= 4:
        test = max(test, 2)  # the cross-identity protocol needs two test identities
    elif count >= 2:
        test = max(test, 1)  # a test split of its own, even for tiny datasets
    test = min(test, count - 1) if count > 1 else 0
    return list(range(count - test)), list(range(count - test, count))


def generate_dataset(root: str | Path, *, videos: int = DEFAULT_ARGS["videos"],
                     frames: int = DEFAULT_ARGS["frames"], size: int = DEFAULT_ARGS["size"],
                     seed: int = DEFAULT_ARGS["seed"],
                     test_fraction: float = DEFAULT_ARGS["test_fraction"],
                     clips_per_identity: int = DEFAULT_ARGS["clips_per_identity"], video_format: str = "mp4",
                     fps: float = DEFAULT_ARGS["fps"], progress: bool = True) -> Path:
    """Write a synthetic dataset in the FOMM layout with per-video ground truth; returns ``root``.

    The dataset is built in a temporary folder beside ``root`` and renamed into place when complete,
    so an interrupted run leaves nothing that looks finished. ``root`` must not exist (or be empty).
    """
    root = Path(root)
    if videos < 2 or frames < 2 or size < 16:
        raise ValueError(f"need videos >= 2, frames >= 2, size >= 16 (got {videos}, {frames}, {size})")
    if video_format not in ("mp4", "png"):
        raise ValueError(f"video_format must be 'mp4' or 'png', not {video_format!r}")
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty")
    identities = math.ceil(videos / clips_per_identity)
    train_ids, test_ids = _split_identities(identities, test_fraction)
    jobs = []
    for index in range(identities):
        for clip in range(clips_per_identity):
            if len(jobs) < videos:
                jobs.append(("test" if index in test_ids else "train", index, clip))
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        from rich.progress import Progress

        with Progress(disable=not progress, transient=False) as bar:
            task = bar.add_task(f"synthesising {videos} videos", total=len(jobs))
            for split, index, clip in jobs:
                video, truth = render_video(index, clip, frames, size, seed, fps)
                name = f"{truth['identity']}#clip{clip:02d}"
                if video_format == "mp4":
                    write_video(staging / split / f"{name}.mp4", video, fps=fps)
                else:
                    write_frame_folder(staging / split / name, video)
                annotation = staging / "annotations" / split / f"{name}.npz"
                annotation.parent.mkdir(parents=True, exist_ok=True)
                np.savez(annotation, **truth)
                bar.advance(task)
        for split in ("train", "test"):
            (staging / split).mkdir(exist_ok=True)
        (staging / "annotations" / "README.md").write_text(ANNOTATIONS_README)
        meta = {
            "generator": "reenact.data.synthetic", "generator_version": GENERATOR_VERSION,
            "args": {"videos": videos, "frames": frames, "size": size, "seed": seed, "test_fraction": test_fraction,
                     "clips_per_identity": clips_per_identity, "video_format": video_format, "fps": fps},
            "expression_names": list(face_model().expression_names),
            "identity_names": list(face_model().identity_names),
            "counts": {"train": sum(j[0] == "train" for j in jobs), "test": sum(j[0] == "test" for j in jobs),
                       "train_identities": len(train_ids), "test_identities": len(test_ids)},
            "conventions": "landmarks in pixels with pixel centres at integer coordinates; pose yaw/pitch/roll "
                           "degrees; see reenact.face.model3d",
        }
        with atomic_path(staging / "meta.json") as temporary:
            temporary.write_text(json.dumps(meta, indent=2) + "\n")
        if root.exists():
            root.rmdir()
        os.replace(staging, root)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return root


def cache_dir() -> Path:
    """``$REENACT_CACHE`` or ``~/.cache/reenact``."""
    return Path(os.environ.get("REENACT_CACHE") or Path.home() / ".cache" / "reenact").expanduser()


def default_dataset_root() -> Path:
    """Where the default dataset lives: a folder named after a hash of its arguments and generator version."""
    key = json.dumps({"version": GENERATOR_VERSION, **DEFAULT_ARGS}, sort_keys=True)
    return cache_dir() / "synthetic" / hashlib.sha1(key.encode()).hexdigest()[:12]


def ensure_default_dataset(progress: bool = True) -> Path:
    """Build the default dataset once (safe when several processes ask at once) and return its root."""
    root = default_dataset_root()
    if (root / "meta.json").is_file():
        return root
    import fcntl

    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        # DDP ranks all call this: one builds, the others wait on the lock and then find meta.json.
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not (root / "meta.json").is_file():
                if root.exists():
                    shutil.rmtree(root)  # an incomplete build: no meta.json
                generate_dataset(root, progress=progress, **{k: v for k, v in DEFAULT_ARGS.items()})
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return root


# ------------------------------------------------------------------------------------------ validation
def dlib_detection_rate(frames: np.ndarray, upsample_to: int = 256) -> float:
    """Fraction of frames ``[N, H, W, 3]`` uint8 in which dlib's HOG frontal detector finds a face.

    Frames smaller than ``upsample_to`` are resized up first (bicubic), as the evaluation does.
    """
    import dlib

    detector = dlib.get_frontal_face_detector()
    found = 0
    for frame in frames:
        if frame.shape[0] < upsample_to:
            frame = cv2.resize(frame, (upsample_to, upsample_to), interpolation=cv2.INTER_CUBIC)
        found += len(detector(np.ascontiguousarray(frame), 1)) > 0
    return found / max(1, len(frames))


def identity_dict(identity: Identity) -> dict[str, Any]:
    """JSON-friendly view of an identity (for debugging and reports)."""
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in asdict(identity).items()}
