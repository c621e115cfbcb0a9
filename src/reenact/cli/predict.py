"""``reenact predict``: animate a source image with a driving video and write the video, as practitioners run
FOMM's and LivePortrait's demos: ``-s/-d/-o``, absolute or relative motion (``--relative``, FOMM's
``--adapt_scale`` and ``--find_best_frame``), face crops of the source and the driving video, the animated
crop pasted back into the source image, and the driving video's audio in the output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from reenact.argparsing import ArgumentParser, BooleanFlag, positive_float, positive_int
from reenact.cli.common import (
    checkpoint_info,
    console,
    output_path,
    read_frames,
    read_raw_frames,
    sidecar_path,
)
from reenact.data.video import to_tensor

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".gif", ".mkv")


def predict_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="reenact predict",
        description="Animate a source image (or a video's first frame) with a driving video and write a video.",
    )
    parser.add_argument("--model", help="registry name; read from the checkpoint when omitted")
    parser.add_argument("--preset", default="tiny", help="config preset used when no checkpoint is given "
                                                         "(default: tiny)")
    parser.add_argument("--ckpt_path", "--ckpt", dest="ckpt",
                        help="reenact checkpoint (.ckpt); required for learned models")
    parser.add_argument("-s", "--source", required=True,
                        help="source image (PNG/JPG) or video (its first frame is used)")
    parser.add_argument("-d", "--driving", required=True, help="driving video file or folder of frames")
    parser.add_argument("-o", "--out", required=True, help="output video (.mp4/.mov/.mkv/.avi/.gif)")
    motion = parser.add_argument_group("motion")
    motion.add_argument("--relative", action="store_true",
                        help="relative motion transfer (FOMM): the driving clip's change from its first (or best) "
                             "frame applied to the source, instead of the driving pose itself")
    motion.add_argument("--adapt_scale", action=BooleanFlag, default=None,
                        help="relative mode of keypoint models (fsrt, keypoint-warp): scale the motion by the "
                             "source/driving face-size ratio (FOMM's adapt_movement_scale; default: the "
                             "model's own setting)")
    motion.add_argument("--find_best_frame", action="store_true",
                        help="relative motion from the driving frame whose face best matches the source's "
                             "(FOMM's demo; dlib landmarks): animate forward and backward from it")
    crops = parser.add_argument_group("face crops")
    crops.add_argument("--crop_source", action="store_true",
                       help="detect the face in --source and crop it like `reenact preprocess`")
    crops.add_argument("--crop_driving", action="store_true",
                       help="crop the driving video to its face: one square box around the union of its faces, "
                            "so the head moves inside a fixed frame as in training clips")
    crops.add_argument("--paste_back", action="store_true",
                       help="with --crop_source: blend the animated crop back into the full source image "
                            "(output at the source image's resolution)")
    crops.add_argument("--crop_increase", type=float, default=0.1,
                       help="crop margin on each side, as a fraction of the face size (default 0.1, as preprocess)")
    crops.add_argument("--face_backend", default="dlib",
                       help="landmark backend for the crops and --find_best_frame: dlib (default), face-alignment, "
                            "mediapipe")
    output = parser.add_argument_group("output")
    output.add_argument("--audio", action=BooleanFlag, default=True,
                        help="copy the driving video's audio track into the output when it has one "
                             "(default: yes; not for .gif or a changed --fps)")
    output.add_argument("--side_by_side", action="store_true", help="write source | driving | generated panels")
    output.add_argument("--max_frames", type=positive_int, help="use at most this many driving frames")
    output.add_argument("--fps", type=positive_float, help="output frame rate (default: the driving video's)")
    output.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--chunk", type=positive_int, default=16,
                        help="driving frames generated per step (default: 16)")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (default), cuda, cuda:1, or auto (cuda when available)")
    return parser


def _check_options(options: argparse.Namespace) -> None:
    """Combinations that cannot work, refused before anything is loaded."""
    if options.find_best_frame and not options.relative:
        raise SystemExit("reenact predict: --find_best_frame aligns relative motion; add --relative")
    if options.adapt_scale is not None and not options.relative:
        raise SystemExit("reenact predict: --adapt_scale scales relative motion; add --relative")
    if options.paste_back and not options.crop_source:
        raise SystemExit("reenact predict: --paste_back pastes the animated face crop back into the source image; "
                         "add --crop_source")
    if options.paste_back and options.side_by_side:
        raise SystemExit("reenact predict: --paste_back and --side_by_side cannot be combined (the pasted frames "
                         "have the source image's size, the panels the model's)")
    if not 0 <= options.crop_increase <= 2:
        raise SystemExit(f"reenact predict: --crop_increase {options.crop_increase:g}: expected 0 .. 2")


def _load_model(options: argparse.Namespace) -> Any:
    from reenact.models import create_model, load_from_checkpoint

    if options.ckpt:
        stored_name, _ = checkpoint_info(options.ckpt)
        if options.model and stored_name and stored_name != options.model:
            raise SystemExit(f"reenact predict: {options.ckpt} holds a {stored_name!r} model, not {options.model!r}")
        model = load_from_checkpoint(options.ckpt)
    else:
        if not options.model:
            raise SystemExit("reenact predict: give --model NAME or --ckpt_path CHECKPOINT")
        model = create_model(options.model, preset=options.preset)
        if model.trainable:
            raise SystemExit(f"reenact predict: {options.model} is a learned model; give its trained --ckpt_path")
    if options.adapt_scale is not None:
        if "adapt_scale" not in model.hparams:
            raise SystemExit(f"reenact predict: --adapt_scale: {model.registry_name} moves in its own parameter "
                             "space, not by keypoints, so there is no keypoint scale to adapt")
        model.hparams.adapt_scale = options.adapt_scale
    return model


def _face_crop(frames: Any, options: argparse.Namespace, what: str, detect_every: int = 1) -> Any:
    from reenact.data.facecrop import find_face_crop
    from reenact.data.preprocess import NoFaceError

    try:
        return find_face_crop(frames, increase=options.crop_increase, backend=options.face_backend,
                              detect_every=detect_every)
    except (NoFaceError, RuntimeError, KeyError) as error:
        message = error.args[0] if error.args else type(error).__name__
        raise SystemExit(f"reenact predict: --crop_{what} {getattr(options, what)}: {message}") from None


def run_predict(args: list[str]) -> int:
    options = predict_parser().parse_args(args)
    _check_options(options)
    import numpy as np
    import torch
    from rich.progress import Progress

    from reenact.data.facecrop import apply_crop, paste_back
    from reenact.data.video import atomic_write_json, audio_stream_info, video_fps, write_video

    out = output_path(options.out, options.overwrite, "predict")
    if out.suffix.lower() not in VIDEO_SUFFIXES:
        raise SystemExit(f"reenact predict: {out}: unsupported output format {out.suffix!r} "
                         "(use .mp4/.mov/.mkv/.avi/.gif)")
    for path in (options.source, options.driving):
        if not Path(path).exists():
            raise SystemExit(f"reenact predict: {path} not found")
    model = _load_model(options)
    device = resolve_device(options.device)
    model = model.to(device).eval()
    size = model.image_size

    source_crop = driving_crop = None
    if options.crop_source:
        source_image = read_raw_frames(options.source, "predict", still=True)
        source_crop = _face_crop(source_image, options, "source")
        source = to_tensor(apply_crop(source_image, source_crop, size))
    else:
        source = read_frames(options.source, size, "predict", still=True)
    if options.crop_driving:
        raw_driving = read_raw_frames(options.driving, "predict", options.max_frames)
        # About 16 detections cover a clip's range of head positions at a fraction of the cost of all frames.
        driving_crop = _face_crop(raw_driving, options, "driving", detect_every=max(1, len(raw_driving) // 16))
        driving = to_tensor(apply_crop(raw_driving, driving_crop, size))
        del raw_driving
    else:
        driving = read_frames(options.driving, size, "predict", max_frames=options.max_frames)
    source, driving = source[None].to(device), driving[None].to(device)

    best = best_frame(source[0, 0], driving[0], options.face_backend) if options.find_best_frame else 0
    started = time.perf_counter()
    with Progress(console=console, transient=False) as progress, torch.no_grad():
        task = progress.add_task(f"animating {driving.shape[1]} frames", total=driving.shape[1])

        def animate(frames: Any) -> Any:
            return model.generate_video(source, frames, options.relative, chunk=options.chunk,
                                        on_frames=lambda count: progress.advance(task, count))

        if best == 0:
            generated = animate(driving)
        else:
            # FOMM's find_best_frame: the best frame is the reference of both halves; the part before it runs
            # backwards from it, so every frame's motion is measured from the best-matching pose.
            backward = animate(driving[:, :best + 1].flip(1)).flip(1)
            progress.advance(task, -1)  # the best frame is animated twice
            forward = animate(driving[:, best:])
            generated = torch.cat([backward, forward[:, 1:]], 1)
    seconds = time.perf_counter() - started
    generated = generated[0].cpu()
    if options.side_by_side:
        panels = [source[0].cpu().expand(generated.shape[0], -1, -1, -1), driving[0].cpu(), generated]
        generated = torch.cat(panels, dim=3)
    frames = (generated.clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    if options.paste_back:
        frames = paste_back(source_image[0], frames, source_crop)

    driving_fps = video_fps(options.driving)
    fps = options.fps or driving_fps
    audio = audio_stream_info(options.driving) if options.audio else None
    audio_note = None
    if audio is not None and (out.suffix.lower() == ".gif" or abs(fps - driving_fps) > 1e-6):
        audio_note = ("not copied: a GIF has no audio" if out.suffix.lower() == ".gif"
                      else f"not copied: --fps {fps:g} differs from the driving video's {driving_fps:g}")
        audio = None
    write_video(out, frames, fps=fps, audio_from=options.driving if audio is not None else None)
    summary = {
        "model": model.registry_name, "checkpoint": options.ckpt, "source": str(options.source),
        "driving": str(options.driving), "output": str(out), "frames": int(frames.shape[0]),
        "size": size, "output_size": [int(frames.shape[2]), int(frames.shape[1])], "fps": fps,
        "relative": options.relative,
        "adapt_scale": bool(model.hparams.adapt_scale) if "adapt_scale" in model.hparams else None,
        "best_frame": best if options.find_best_frame else None,
        "source_crop": list(source_crop.box) if source_crop else None,
        "driving_crop": list(driving_crop.box) if driving_crop else None, "paste_back": options.paste_back,
        "audio": audio or audio_note, "device": str(device), "seconds": round(seconds, 3),
        "ms_per_frame": round(1000 * seconds / max(1, frames.shape[0]), 2),
    }
    json_path = atomic_write_json(sidecar_path(out), summary)
    extra = f", audio {audio}" if audio else ""
    console.print(f"wrote {out} ({frames.shape[0]} frames, {fps:g} fps{extra}) and {json_path}")
    if audio_note:
        console.print(f"[yellow]audio {audio_note}[/yellow]")
    return 0


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; an unavailable CUDA device is a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"reenact: --device {name}: no CUDA device is visible (use --device cpu or auto)")
    return name


def best_frame(source: Any, driving: Any, backend_name: str = "dlib") -> int:
    """Index of the driving frame ``[T, 3, H, W]`` whose dlib landmarks best match the source's ``[3, H, W]``
    (normalised by position and face area, FOMM/FSRT ``find_best_frame``); frames without a face never win."""
    import numpy as np
    import torch

    from reenact.face.landmarks import get_landmark_backend
    from reenact.models.fsrt.torch_model import best_initial_frame

    backend = get_landmark_backend(backend_name)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"reenact predict: --find_best_frame needs {backend_name} landmarks: {reason}")

    def landmarks(frame: Any) -> Any:
        # dlib's HOG detector misses faces below about 80 px: detect on a 256 px copy, as the evaluation does
        # (the match is normalised by position and face area, so the scale does not matter).
        if frame.shape[-1] < 256:
            frame = torch.nn.functional.interpolate(frame[None], size=(256, 256), mode="bicubic",
                                                    align_corners=False)[0]
        image = (frame.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        return backend.detect(image)

    reference = landmarks(source)
    if reference is None:
        raise SystemExit("reenact predict: --find_best_frame: no face found in the source image")
    found = [(index, points) for index, frame in enumerate(driving) if (points := landmarks(frame)) is not None]
    if not found:
        raise SystemExit("reenact predict: --find_best_frame: no face found in any driving frame")
    stacked = torch.from_numpy(np.stack([points for _, points in found])).float()[None]
    chosen = int(best_initial_frame(torch.from_numpy(reference).float()[None], stacked)[0])
    return found[chosen][0]
