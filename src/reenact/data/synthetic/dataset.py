"""Writing synthetic datasets in the FOMM layout with ground truth, and the cached default dataset."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from filelock import FileLock

from reenact.data.synthetic.identity import face_model, identity_name
from reenact.data.synthetic.renderer import render_video
from reenact.data.video import atomic_directory, atomic_path, write_frame_folder, write_video

GENERATOR_VERSION = 4

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
    with atomic_directory(root, replace_empty=True) as staging:
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
    return root


def cache_dir() -> Path:
    """``$REENACT_CACHE`` or ``~/.cache/reenact``."""
    return Path(os.environ.get("REENACT_CACHE") or Path.home() / ".cache" / "reenact").expanduser()


def default_dataset_root() -> Path:
    """``<cache>/synthetic/<hash>``: the hash covers :data:`DEFAULT_ARGS` and :data:`GENERATOR_VERSION`."""
    key = json.dumps({"version": GENERATOR_VERSION, **DEFAULT_ARGS}, sort_keys=True)
    return cache_dir() / "synthetic" / hashlib.sha1(key.encode()).hexdigest()[:12]


def ensure_default_dataset(progress: bool = True) -> Path:
    """Build the default dataset once and return its root (:func:`default_dataset_root`).

    Safe when several processes ask at once (e.g. DDP ranks): one builds under a file lock, the others
    wait for it and then find ``meta.json``.
    """
    root = default_dataset_root()
    if (root / "meta.json").is_file():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(root.parent / f".{root.name}.lock"):
        if not (root / "meta.json").is_file():
            if root.exists():
                shutil.rmtree(root)  # an incomplete build: no meta.json
            generate_dataset(root, progress=progress, **DEFAULT_ARGS)
    return root


