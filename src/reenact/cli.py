"""The ``reenact`` command.

``reenact fit|validate|test --model NAME [--preset P]`` is Lightning's CLI (``-c/--config``,
``--print_config``, ``--trainer.*``, ``--data.*``, ``--model.*``) with the model chosen by its short
registry name and its preset ``conf/NAME/P.yaml`` applied as the default config. The other commands
(``predict``, ``models``, ``data check``, ``data synth``) are plain argparse commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

LIGHTNING_COMMANDS = ("fit", "validate", "test")
console = Console(stderr=False)
error_console = Console(stderr=True)

TOP_HELP = """\
usage: reenact COMMAND [options]

Face reenactment models under one trainer, one data pipeline and one metrics suite.

commands:
  fit        train a model:              reenact fit --model NAME [--preset tiny|paper] [--data.root ROOT]
  validate   run the validation protocol: reenact validate --model NAME --ckpt_path C
  test       evaluate (same-identity, cross-identity and, for models that edit, editing protocols;
             writes results.json/.md):
                                          reenact test --model NAME [--ckpt_path C]
  predict    animate a source image with a driving video, write a video:
             reenact predict --model NAME --ckpt C --source IMG --driving VIDEO --out OUT.mp4
  edit       edit a portrait's pose/expression (lpmm parameters and presets, pechead angles and expression),
             or sweep one parameter to a video:
             reenact edit --ckpt C --source IMG --param 3=+1.5 --preset surprise --out OUT.png
             reenact edit --ckpt C --source IMG --yaw 20 --pitch 0 --roll 0 --out OUT.png
  benchmark  train and evaluate several models under identical conditions, write a report with tables and
             pictures: reenact benchmark --quick --out bench/  (see reenact benchmark --help)
  models     table of registered models, presets and parameter counts
  doctor     which pretrained weights, face backends and metrics are available, and how to enable the rest
  convert    released FSRT / LIA / FOMM keypoint-detector files -> reenact checkpoints:
             reenact convert fsrt --checkpoint vox256.pt --kp-detector kp_detector.pt -o fsrt_vox.ckpt
  data       dataset tools: `reenact data check ROOT`, `reenact data annotate ROOT`, `reenact data synth --out DIR`
  preprocess detect, crop, resize and annotate raw videos/images into the FOMM layout: reenact preprocess IN OUT

fit/validate/test accept Lightning CLI options: -c/--config FILE, --print_config, --trainer.*, --data.*,
--model.* (see `reenact fit --model NAME --help`). Without --data.root the embedded synthetic dataset is
built once into the cache and used.
"""


# ------------------------------------------------------------------------------------------- Lightning
def _pop_option(args: list[str], name: str) -> str | None:
    """Remove ``--name VALUE`` or ``--name=VALUE`` (exactly that name, not ``--name.sub``) from ``args``."""
    for index, arg in enumerate(args):
        if arg == name:
            if index + 1 >= len(args) or args[index + 1].startswith("-"):
                raise SystemExit(f"reenact: {name} needs a value")
            value = args[index + 1]
            del args[index:index + 2]
            return value
        if arg.startswith(name + "="):
            del args[index]
            return arg.split("=", 1)[1]
    return None


def _checkpoint_info(path: str) -> tuple[str | None, dict[str, Any]]:
    """(registry name, hyper-parameters) stored in a reenact checkpoint, read with ``weights_only=True``."""
    import torch

    checkpoint_path = Path(path)
    if not checkpoint_path.is_file():
        raise SystemExit(f"reenact: checkpoint {checkpoint_path} not found")
    if checkpoint_path.stat().st_size == 0:
        raise SystemExit(f"reenact: checkpoint {checkpoint_path} is empty (0 bytes); was its writing interrupted?")
    try:
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
    except Exception as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SystemExit(f"reenact: {checkpoint_path} is not a readable checkpoint ({reason})") from None
    if not isinstance(checkpoint, dict):
        raise SystemExit(f"reenact: {checkpoint_path} is not a reenact checkpoint (it holds a "
                         f"{type(checkpoint).__name__}, not a dict)")
    info = checkpoint.get("reenact") or {}
    hyper_parameters = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    return info.get("model"), hyper_parameters


def _lightning_help(command: str) -> None:
    from reenact.models import list_models

    console.print(f"usage: reenact {command} --model NAME [--preset PRESET] [Lightning CLI options]\n")
    console.print(f"registered models: {', '.join(list_models())}")
    console.print(f"Options of one model: reenact {command} --model NAME --help")


def run_lightning(command: str, args: list[str]) -> int:
    """``fit``/``validate``/``test`` through :class:`lightning.pytorch.cli.LightningCLI`."""
    args = list(args)
    name = _pop_option(args, "--model")
    preset = _pop_option(args, "--preset") or "tiny"
    untrained = "--untrained" in args
    args = [a for a in args if a != "--untrained"]
    checkpoint = _pop_option(args, "--ckpt")
    if checkpoint is not None:
        args += ["--ckpt_path", checkpoint]
    else:
        checkpoint = _pop_option(list(args), "--ckpt_path")
    hyper_parameters: dict[str, Any] = {}
    if checkpoint is not None and command != "fit":
        stored_name, hyper_parameters = _checkpoint_info(checkpoint)
        if name is None:
            name = stored_name
        elif stored_name is not None and stored_name != name:
            raise SystemExit(f"reenact: {checkpoint} holds a {stored_name!r} model, not {name!r}")
    if name is None:
        if any(a in ("-h", "--help") for a in args):
            _lightning_help(command)
            return 0
        raise SystemExit(f"reenact {command}: --model NAME is required (see `reenact models`)")

    from lightning.pytorch.cli import LightningCLI

    from reenact.data import ReenactDataModule
    from reenact.data.discovery import DatasetError
    from reenact.registry import get_entry, preset_path
    from reenact.training import follow_default_root_dir, trainer_defaults
    from reenact.weights import MissingWeightsError

    try:
        entry = get_entry(name)
        config_files = [str(preset_path(name, preset))]
    except (KeyError, FileNotFoundError) as error:
        raise SystemExit(f"reenact: {error.args[0]}") from None
    model_class = entry.load_class()
    if command == "fit" and not model_class.trainable:
        raise SystemExit(f"reenact: {name} has nothing to train; evaluate it with `reenact test --model {name}`")
    asks_help = any(a in ("-h", "--help", "--print_config") or a.startswith("--print_config=") for a in args)
    if (command != "fit" and model_class.trainable and checkpoint is None and not untrained and not asks_help):
        raise SystemExit(
            f"reenact {command}: {name} is a learned model and no checkpoint was given, so its weights are random. "
            f"Give --ckpt_path CKPT (e.g. runs/{name}/version_0/checkpoints/last.ckpt), or --untrained to score "
            "the initial weights on purpose (the results then say so).")
    stored_config = None
    if hyper_parameters:
        # Evaluate a checkpoint with the architecture it was trained with, not the preset's.
        import yaml

        handle, stored_config = tempfile.mkstemp(suffix=".yaml", prefix="reenact-ckpt-")
        with os.fdopen(handle, "w") as stream:
            yaml.safe_dump({"model": hyper_parameters}, stream)
        config_files.append(stored_config)

    class ReenactCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: Any) -> None:
            parser.link_arguments("model.image_size", "data.image_size")

        def _parse_ckpt_path(self) -> None:
            # Lightning would apply the checkpoint's hyper-parameters over the command line, so
            # `--model.relative true` would be ignored; they are a default config file here instead.
            return

        def before_instantiate_classes(self) -> None:
            config = self.config[self.subcommand]
            follow_default_root_dir(config.trainer, name)
            announce_run(command, name, preset, config, config_files[:1], checkpoint)

        def after_instantiate_classes(self) -> None:
            self.model.untrained_evaluation = untrained and checkpoint is None

    import warnings

    # LightningCLI warns when it is given `args` while sys.argv holds arguments too: here they are the same
    # command. (sys.argv itself must stay: Lightning's DDP launcher re-runs it to start the other ranks.)
    warnings.filterwarnings("ignore", message=r"LightningCLI's args parameter is intended")
    try:
        ReenactCLI(
            model_class=model_class,
            datamodule_class=ReenactDataModule,
            subclass_mode_model=False,
            trainer_defaults=trainer_defaults(name),
            seed_everything_default=0,
            parser_kwargs={command: {"default_config_files": config_files}},
            save_config_kwargs={"overwrite": True},
            args=[command, *args],
        )
    except (DatasetError, MissingWeightsError) as error:
        # A bad dataset or a missing weights file is the user's to fix: one clear message, not a traceback.
        raise SystemExit(f"reenact {command}: {error}") from None
    finally:
        if stored_config is not None:
            Path(stored_config).unlink(missing_ok=True)
    return 0


def announce_run(command: str, name: str, preset: str, config: Any, preset_files: list[str],
                 checkpoint: str | None) -> None:
    """First lines of a fit/validate/test: what runs, from which files, on which data, writing where."""
    if int(os.environ.get("LOCAL_RANK", "0")) != 0:
        return
    data_root = config.data.get("root") if config.get("data") is not None else None
    configs = [str(path) for path in (config.get("config") or [])]
    console.print(f"[bold]reenact {command}[/bold]: model [cyan]{name}[/cyan], preset {preset} "
                  f"({', '.join(preset_files)})" + (f", config {', '.join(configs)}" if configs else ""))
    console.print(f"  data: {data_root or 'embedded synthetic dataset (built once into the cache)'}"
                  + (f" · checkpoint: {checkpoint}" if checkpoint else "")
                  + f" · output: {config.trainer.get('default_root_dir')}/")


# ------------------------------------------------------------------------------- shared by predict/edit
def _output_path(out: str, overwrite: bool, command: str) -> Path:
    """Refuse to overwrite ``out`` unless asked, before any work starts."""
    from reenact.data.video import check_writable

    try:
        target = check_writable(out, overwrite)
        check_writable(sidecar_path(target), overwrite)  # the JSON summary written beside it
    except FileExistsError as error:
        raise SystemExit(f"reenact {command}: {error}") from None
    # Probe the folder now (create it, write and remove a scratch file), not after all frames are generated.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.probe"):
            pass
    except OSError as error:
        raise SystemExit(f"reenact {command}: cannot write {target}: {error.strerror or error}") from None
    return target


def sidecar_path(out: Path) -> Path:
    """``OUT.json``: the machine-readable summary ``predict``/``edit`` write beside their output."""
    return out.with_suffix(out.suffix + ".json")


def _read_frames(path: str | Path, size: int, command: str, max_frames: int | None = None,
                 still: bool = False) -> Any:
    """A video, frame folder or (``still``) an image / a video's first frame -> ``[N, 3, size, size]`` in [0, 1]."""
    import torch
    import torch.nn.functional as F

    from reenact.data.video import IMAGE_SUFFIXES, VideoReadError, read_image, read_video

    path = Path(path)
    if not path.exists():
        raise SystemExit(f"reenact {command}: {path} not found")
    try:
        if still and path.suffix.lower() in IMAGE_SUFFIXES:
            frames = read_image(path)[None]
        else:
            frames = read_video(path, max_frames=1 if still else max_frames)
    except VideoReadError as error:
        raise SystemExit(f"reenact {command}: {error}") from None
    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255)
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.clamp(0, 1)


# --------------------------------------------------------------------------------------------- predict
def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (so ``--max-frames 0`` is an error, not a 1-frame video)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a number > 0 (frame rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reenact predict",
        description="Animate a source image (or a video's first frame) with a driving video and write a video.",
    )
    parser.add_argument("--model", help="registry name; read from the checkpoint when omitted")
    parser.add_argument("--preset", default="tiny", help="preset used when no checkpoint is given (default: tiny)")
    parser.add_argument("--ckpt", "--ckpt_path", dest="ckpt",
                        help="reenact checkpoint (.ckpt); required for learned models")
    parser.add_argument("-s", "--source", required=True,
                        help="source image (PNG/JPG) or video (its first frame is used)")
    parser.add_argument("-d", "--driving", required=True, help="driving video file or folder of frames")
    parser.add_argument("-o", "--out", required=True, help="output video (.mp4/.mov/.avi/.gif)")
    parser.add_argument("--relative", action="store_true", help="relative motion transfer (FOMM) instead of absolute")
    parser.add_argument("--side-by-side", action="store_true", help="write source | driving | generated panels")
    parser.add_argument("--max-frames", type=_positive_int, help="use at most this many driving frames")
    parser.add_argument("--fps", type=_positive_float, help="output frame rate (default: the driving video's)")
    parser.add_argument("--chunk", type=_positive_int, default=16,
                        help="driving frames generated per step (default: 16)")
    parser.add_argument("--find-best-frame", action="store_true",
                        help="relative motion from the driving frame whose face best matches the source's "
                             "(FOMM's demo; dlib landmarks): animate forward and backward from it")
    parser.add_argument("--device", default="cpu",
                        help="torch device: cpu (default), cuda, cuda:1, or auto (cuda when available)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--crop-source", action="store_true",
                        help="detect the face in --source and crop it like `reenact preprocess` (dlib)")
    return parser


def run_predict(args: list[str]) -> int:
    options = _predict_parser().parse_args(args)
    import numpy as np
    import torch
    from rich.progress import Progress

    from reenact.data.video import atomic_write_json, video_fps, write_video
    from reenact.models import create_model, load_from_checkpoint

    if options.find_best_frame and not options.relative:
        raise SystemExit("reenact predict: --find-best-frame aligns relative motion; add --relative")
    out = _output_path(options.out, options.overwrite, "predict")
    if out.suffix.lower() not in (".mp4", ".mov", ".avi", ".gif", ".mkv"):
        raise SystemExit(f"reenact predict: {out}: unsupported output format {out.suffix!r} (use .mp4/.mov/.avi/.gif)")
    for path in (options.source, options.driving):
        if not Path(path).exists():
            raise SystemExit(f"reenact predict: {path} not found")
    if options.ckpt:
        stored_name, _ = _checkpoint_info(options.ckpt)
        if options.model and stored_name and stored_name != options.model:
            raise SystemExit(f"reenact predict: {options.ckpt} holds a {stored_name!r} model, not {options.model!r}")
        model = load_from_checkpoint(options.ckpt)
    else:
        if not options.model:
            raise SystemExit("reenact predict: give --model NAME or --ckpt CHECKPOINT")
        model = create_model(options.model, preset=options.preset)
        if model.trainable:
            raise SystemExit(f"reenact predict: {options.model} is a learned model; give its trained --ckpt")
    device = _resolve_device(options.device)
    model = model.to(device).eval()
    options.device = device
    size = model.image_size
    if options.crop_source:
        from reenact.data.preprocess import load_cropped_source

        source = load_cropped_source(options.source, size)[None].to(options.device)
    else:
        source = _read_frames(options.source, size, "predict", still=True)[None].to(options.device)
    driving = _read_frames(options.driving, size, "predict", max_frames=options.max_frames)[None].to(options.device)
    best = _best_frame(source[0, 0], driving[0]) if options.find_best_frame else 0
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
    fps = options.fps or video_fps(options.driving)
    write_video(out, frames, fps=fps)
    summary = {
        "model": model.registry_name, "checkpoint": options.ckpt, "source": str(options.source),
        "driving": str(options.driving), "output": str(out), "frames": int(frames.shape[0]),
        "size": size, "fps": fps, "relative": options.relative, "device": str(device),
        "best_frame": best if options.find_best_frame else None, "seconds": round(seconds, 3),
        "ms_per_frame": round(1000 * seconds / max(1, frames.shape[0]), 2),
    }
    json_path = atomic_write_json(sidecar_path(out), summary)
    console.print(f"wrote {out} ({frames.shape[0]} frames, {fps:g} fps) and {json_path}")
    return 0


def _resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; an unavailable CUDA device is a clear error."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"reenact: --device {name}: no CUDA device is visible (use --device cpu or auto)")
    return name


def _best_frame(source: Any, driving: Any) -> int:
    """Index of the driving frame ``[T, 3, H, W]`` whose dlib landmarks best match the source's ``[3, H, W]``
    (normalised by position and face area, FOMM/FSRT ``find_best_frame``); frames without a face never win."""
    import numpy as np
    import torch

    from reenact.face.landmarks import get_landmark_backend
    from reenact.models.fsrt.model import best_initial_frame

    backend = get_landmark_backend("dlib")
    reason = backend.unavailable_reason()
    if reason is not None:
        raise SystemExit(f"reenact predict: --find-best-frame needs dlib landmarks: {reason}")

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
        raise SystemExit("reenact predict: --find-best-frame: no face found in the source image")
    found = [(index, points) for index, frame in enumerate(driving) if (points := landmarks(frame)) is not None]
    if not found:
        raise SystemExit("reenact predict: --find-best-frame: no face found in any driving frame")
    stacked = torch.from_numpy(np.stack([points for _, points in found])).float()[None]
    chosen = int(best_initial_frame(torch.from_numpy(reference).float()[None], stacked)[0])
    return found[chosen][0]


# ------------------------------------------------------------------------------------------------ edit
def _parse_assignments(values: list[str], flag: str) -> dict[int, float]:
    """``["3=+1.5", "0=-2"]`` -> ``{3: 1.5, 0: -2.0}``; a malformed item is a clear error."""
    parsed = {}
    for item in values:
        index, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            parsed[int(index)] = float(value)
        except ValueError:
            raise SystemExit(f"reenact edit: {flag} {item!r}: expected INDEX=VALUE, e.g. 3=+1.5") from None
    return parsed


def _pechead_edit(model: Any, source: Any, options: argparse.Namespace, offsets: dict[int, float],
                  absolute: dict[int, float], expression_from: Any, values: list[float]) -> Any:
    """PECHead (Sec. 4.3): frames ``[N, 3, H, W]`` rendered with edited pose / expression coefficients.

    Angles not given keep the source's own (absolute mode) or add nothing (``--relative-pose``); ``--set`` and
    ``--param`` set or offset expression coefficients, after ``--expression-from`` and before the scale.
    """
    import torch

    coefficients = model.coefficients(source[:, None])
    pose = torch.zeros_like(coefficients["pose"][:, 0]) if options.relative_pose else coefficients["pose"][:, 0]
    pose = pose.clone()
    for axis, angle in enumerate((options.yaw, options.pitch, options.roll)):
        if angle is not None:
            pose[:, axis] = pose[:, axis] + angle if options.relative_pose else angle
    expression = (model.coefficients(expression_from[:, None]) if expression_from is not None
                  else coefficients)["expression"][:, 0].clone()
    size = expression.shape[-1]
    for index in (*absolute, *offsets):
        if not 0 <= index < size:
            raise SystemExit(f"reenact edit: expression coefficient {index} out of range 0..{size - 1}")
    for index, value in absolute.items():
        expression[:, index] = value
    for index, value in offsets.items():
        expression[:, index] += value
    expression = expression * options.expression_scale

    def render(pose_now: Any, expression_now: Any) -> Any:
        return model.edit(source, pose=pose_now, expression=expression_now, relative_pose=options.relative_pose)

    if options.sweep is None:
        return render(pose, expression)
    frames = []
    axes = {"yaw": 0, "pitch": 1, "roll": 2}
    for value in values:
        pose_now, expression_now = pose.clone(), expression.clone()
        if options.sweep in axes:
            pose_now[:, axes[options.sweep]] = value
        elif options.sweep.startswith("expr:") and options.sweep[5:].isdigit() and int(options.sweep[5:]) < size:
            expression_now[:, int(options.sweep[5:])] = value
        else:
            raise SystemExit(f"reenact edit: pechead sweeps yaw, pitch, roll or expr:I (I < {size}), "
                             f"not {options.sweep!r}")
        frames.append(render(pose_now, expression_now)[0])
    return torch.stack(frames)


def run_edit(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="reenact edit",
        description="Edit a portrait with a model's control parameters, to an image or as a sweep to a video. "
                    "lpmm (Sec. 4.4): landmark-parameter offsets/values in standard deviations, presets, scaling, "
                    "base pose. pechead (Sec. 4.3): absolute or relative yaw/pitch/roll (frontalisation: --yaw 0 "
                    "--pitch 0 --roll 0), expression coefficients set/offset/scaled or taken from another image.",
    )
    parser.add_argument("--model", help="registry name (read from the checkpoint when omitted)")
    parser.add_argument("--ckpt", "--ckpt_path", dest="ckpt", required=True,
                        help="trained checkpoint of a model that supports editing (lpmm, pechead)")
    parser.add_argument("-s", "--source", required=True, help="identity image (PNG/JPG) or a video (first frame)")
    parser.add_argument("--driving", help="pose image the edit starts from (default: the source)")
    parser.add_argument("--param", action="append", default=[], metavar="I=V",
                        help="add V standard deviations to parameter I (0-based); repeatable")
    parser.add_argument("--set", action="append", default=[], metavar="I=V",
                        help="set parameter I to V standard deviations; repeatable")
    parser.add_argument("--preset", help="named preset (e.g. surprise) added on top, or a one-preset JSON file")
    parser.add_argument("--presets", help="preset library JSON (default: the model's library)")
    parser.add_argument("--base", choices=("image", "zero"), default="image",
                        help="start from the driving image's parameters or the base pose p = 0")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the final parameters (interpolation)")
    parser.add_argument("--yaw", type=float, help="pechead: yaw in degrees (angles not given keep the source's)")
    parser.add_argument("--pitch", type=float, help="pechead: pitch in degrees")
    parser.add_argument("--roll", type=float, help="pechead: roll in degrees")
    parser.add_argument("--relative-pose", action="store_true", help="pechead: add the angles to the source's pose")
    parser.add_argument("--expression-from", help="pechead: image whose expression is transferred")
    parser.add_argument("--expression-scale", type=float, default=1.0, help="pechead: scale the expression")
    parser.add_argument("--sweep", metavar="P", help="sweep one parameter and write a video: lpmm: an index; "
                                                     "pechead: yaw, pitch, roll or expr:I")
    parser.add_argument("--sweep-from", type=float, default=-3.0, help="sweep start (default -3; degrees for angles)")
    parser.add_argument("--sweep-to", type=float, default=3.0, help="sweep end (default 3)")
    parser.add_argument("--steps", type=int, default=31, help="sweep frames (default 31)")
    parser.add_argument("--fps", type=float, default=15.0, help="sweep video frame rate (default 15)")
    parser.add_argument("-o", "--out", required=True, help="output .png (edit) or .mp4/.gif (sweep)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    options = parser.parse_args(args)

    import numpy as np
    import torch

    from reenact.data.video import atomic_path, atomic_write_json, write_video
    from reenact.models import load_from_checkpoint

    out = _output_path(options.out, options.overwrite, "edit")
    video_out = out.suffix.lower() in (".mp4", ".mov", ".avi", ".gif", ".mkv")
    if options.sweep is not None and not video_out:
        raise SystemExit(f"reenact edit: --sweep writes a video; {out} should end in .mp4/.gif")
    if options.sweep is None and out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise SystemExit(f"reenact edit: {out}: an edit writes an image (.png/.jpg)")
    offsets = _parse_assignments(options.param, "--param")
    absolute = _parse_assignments(options.set, "--set")
    low, high = options.sweep_from, options.sweep_to
    stored_name, _ = _checkpoint_info(options.ckpt)
    if options.model and stored_name and options.model != stored_name:
        raise SystemExit(f"reenact edit: {options.ckpt} holds a {stored_name!r} model, not {options.model!r}")
    if stored_name not in ("lpmm", "pechead"):
        raise SystemExit(f"reenact edit: {stored_name!r} has no control parameters; editing needs an lpmm or "
                         "pechead checkpoint")
    model = load_from_checkpoint(options.ckpt).eval()
    if stored_name == "lpmm":
        # Parameter indices checked before any work, as one clear line (not an IndexError from deep inside).
        count = model.pca.num_components
        for flag, indices in (("--param", offsets), ("--set", absolute)):
            for index in indices:
                if not 0 <= index < count:
                    raise SystemExit(f"reenact edit: {flag} {index}: this LPMM has parameters 0..{count - 1}")
    source = _read_frames(options.source, model.image_size, "edit", still=True)
    values = torch.linspace(low, high, options.steps).tolist()
    with torch.no_grad():
        if stored_name == "pechead":
            expression_from = (_read_frames(options.expression_from, model.image_size, "edit", still=True)
                                if options.expression_from else None)
            frames = _pechead_edit(model, source, options, offsets, absolute, expression_from, values)
        else:
            from reenact.models.lpmm import control

            driving = _read_frames(options.driving, model.image_size, "edit", still=True) if options.driving else None
            if options.sweep is not None:
                try:
                    index = int(options.sweep)
                except ValueError:
                    raise SystemExit(f"reenact edit: lpmm sweeps a parameter index, not {options.sweep!r}") from None
                if not 0 <= index < model.pca.num_components:
                    raise SystemExit(f"reenact edit: --sweep {index}: this LPMM has parameters "
                                     f"0..{model.pca.num_components - 1}")
                frames = control.sweep(model, source, index, values, base=options.base)
            else:
                try:
                    frames = control.edit(model, source, offsets, options.preset, driving=driving,
                                          set_values=absolute, base=options.base, scale=options.scale,
                                          presets_path=options.presets)
                except (KeyError, ValueError) as error:  # unknown preset, preset of another basis, bad file
                    raise SystemExit(f"reenact edit: {error.args[0]}") from None
    array = (frames.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    if options.sweep is not None:
        write_video(out, array, fps=options.fps)
    else:
        from PIL import Image

        with atomic_path(out) as temporary:
            Image.fromarray(array[0]).save(temporary, format="PNG" if out.suffix.lower() == ".png" else "JPEG")
    summary = {"model": stored_name, "checkpoint": options.ckpt, "source": options.source, "output": str(out),
               "offsets": offsets, "set": absolute, "preset": options.preset, "base": options.base,
               "scale": options.scale, "sweep": options.sweep, "range": [low, high], "frames": int(array.shape[0]),
               "pose": {"yaw": options.yaw, "pitch": options.pitch, "roll": options.roll,
                        "relative": options.relative_pose}, "expression_scale": options.expression_scale}
    json_path = atomic_write_json(sidecar_path(out), summary)
    console.print(f"wrote {out} and {json_path}")
    return 0


# ---------------------------------------------------------------------------------------------- models
def run_models(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reenact models", description="List registered models and presets.")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    options = parser.parse_args(args)

    import torch
    from rich.table import Table

    from reenact.models import create_model, get_entry, list_models
    from reenact.weights import MissingWeightsError

    rows = []
    for name in list_models():
        entry = get_entry(name)
        counts = {}
        for preset in entry.presets():
            try:
                # Counting on the meta device allocates nothing, even for the paper presets.
                with torch.device("meta"):
                    model = create_model(name, preset=preset)
                counts[preset] = sum(p.numel() for p in model.parameters())
            except MissingWeightsError as error:  # a preset that needs absent weights still gets a row
                counts[preset] = f"n/a (needs pretrained weights {error.name!r}, not found)"
            except Exception as error:
                counts[preset] = f"n/a ({type(error).__name__}: {error})"
        rows.append({"name": name, "description": entry.description, "paper": entry.paper, "parameters": counts})
    if options.json:
        console.print_json(json.dumps(rows))
        return 0
    table = Table(title="reenact models")
    for column in ("model", "presets: parameters", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        presets = "\n".join(
            f"{p}: {c / 1e6:.2f} M" if isinstance(c, int) else f"{p}: {c}" for p, c in row["parameters"].items()
        )
        table.add_row(row["name"], presets or "-", row["description"])
    console.print(table)
    return 0


# ------------------------------------------------------------------------------------------------ data
def run_data(args: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="reenact data", description="Dataset tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="check a FOMM-layout dataset and name every problem")
    check.add_argument("root", help="dataset root with train/ and test/ (optional val/)")
    check.add_argument("--min-frames", type=int, default=2, help="shortest usable video (default: 2)")
    check.add_argument("--require-annotations", action="store_true", help="treat missing annotations as errors")
    check.add_argument("--json", dest="json_out", help="also write the report as JSON to this file")
    annotate = commands.add_parser("annotate", help="write 68 landmarks and head pose per frame with a landmark "
                                                    "backend (annotations/<split>/<video>.npz)")
    annotate.add_argument("root", help="dataset root with train/ and test/ (optional val/)")
    annotate.add_argument("--backend", default="dlib", help="landmark backend: dlib (default), face-alignment, "
                                                            "mediapipe")
    annotate.add_argument("--overwrite", action="store_true", help="re-annotate videos that already have a file")
    annotate.add_argument("--json", dest="json_out", help="also write the summary as JSON to this file")
    synth = commands.add_parser("synth", help="write a synthetic talking-head dataset with ground truth")
    synth.add_argument("--out", required=True, help="output root (FOMM layout + annotations/)")
    synth.add_argument("--videos", type=int, default=40, help="number of videos (default: 40)")
    synth.add_argument("--frames", type=int, default=32, help="frames per video (default: 32)")
    synth.add_argument("--size", type=int, default=128, help="frame size in pixels (default: 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--format", choices=("mp4", "png"), default="mp4", help="videos or PNG folders")
    synth.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    options = parser.parse_args(args)

    if options.command == "check":
        from rich.progress import Progress

        from reenact.data.checks import check_dataset
        from reenact.data.discovery import list_entries

        root = Path(options.root)
        total = sum(len(list_entries(root / split)[0]) for split in ("train", "val", "test")
                    if (root / split).is_dir())
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"checking {total} videos", total=total)
            report = check_dataset(options.root, min_frames=options.min_frames,
                                   require_annotations=options.require_annotations,
                                   on_video=lambda _: progress.advance(task))
        console.print(report.render())
        if options.json_out:
            Path(options.json_out).write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
        if not report.ok:
            error_console.print(f"[red]{options.root}: dataset cannot be used (errors above)[/red]")
            return 1
        console.print(f"[green]{options.root}: dataset OK[/green]")
        return 0

    if options.command == "annotate":
        return _annotate(options)

    from reenact.data.synthetic import generate_dataset

    out = Path(options.out)
    if out.exists() and any(out.iterdir()):
        if not options.overwrite:
            raise SystemExit(f"reenact data synth: {out} exists and is not empty; pass --overwrite to replace it")
        import shutil

        shutil.rmtree(out)
    started = time.perf_counter()
    generate_dataset(out, videos=options.videos, frames=options.frames, size=options.size, seed=options.seed,
                     video_format=options.format, progress=True)
    console.print(f"wrote {options.videos} videos to {out} in {time.perf_counter() - started:.1f} s")
    return 0


def _annotate(options: argparse.Namespace) -> int:
    from rich.progress import Progress
    from rich.table import Table

    from reenact.data.annotate import annotate_dataset
    from reenact.data.discovery import DatasetError, list_entries

    root = Path(options.root)
    total = sum(len(list_entries(root / split)[0]) for split in ("train", "val", "test") if (root / split).is_dir())
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"annotating {total} videos with {options.backend}", total=total)
            summary = annotate_dataset(root, backend=options.backend, overwrite=options.overwrite,
                                       on_video=lambda _: progress.advance(task))
    except (DatasetError, RuntimeError, KeyError) as error:
        raise SystemExit(f"reenact data annotate: {error}") from None
    table = Table(title=f"annotations of {root} ({options.backend})")
    for column in ("written", "kept (already annotated)", "no face found"):
        table.add_column(column)
    table.add_row(str(len(summary.written)), str(len(summary.kept)), str(len(summary.no_face)))
    console.print(table)
    for name in summary.no_face:
        console.print(f"[yellow]no face in any frame of {name}: no annotation written[/yellow]")
    if options.json_out:
        Path(options.json_out).write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------- doctor
def run_doctor(args: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="reenact doctor",
        description="Which pretrained weights, face-analysis backends and metrics are available here, and how to "
                    "enable the others (nothing is downloaded).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="full tables: what each item is and where it was found (default: one line per item)")
    options = parser.parse_args(args)
    from rich.table import Table

    from reenact.doctor import report

    result = report()
    if options.json:
        console.print_json(json.dumps(result))
        return 0
    mark = {True: "[green]yes[/green]", False: "[red]no[/red]"}
    if not options.verbose:
        # One line per item: what is missing says only what to do (the first sentence of its reason).
        for title, key in (("weights", "weights"), ("face backends", "backends"), ("metrics", "metrics")):
            console.print(f"[bold]{title}[/bold]")
            for row in result[key]:
                label = f"{row['kind']}/{row['name']}" if "kind" in row else row["name"]
                where = " ".join(str(row["where"]).split())
                note = "" if row["available"] else f"  {where if len(where) <= 110 else where[:107] + '...'}"
                console.print(f"  {label:<28} {mark[row['available']]}{note}", highlight=False, soft_wrap=True)
        runnable = [row["name"] for row in result["metrics"] if row["available"]]
        console.print(f"metrics that can run now: {', '.join(runnable) or 'none'}  (details: reenact doctor -v)",
                      soft_wrap=True)
        return 0
    sections = (("Pretrained weights", "weights", ("name", "what")), ("Face-analysis backends", "backends",
                ("kind", "name")), ("Metrics", "metrics", ("name", "protocols")))
    for title, key, columns in sections:
        table = Table(title=title)
        for column in (*columns, "available", "where it is, or how to enable it"):
            table.add_column(column, overflow="fold")
        for row in result[key]:
            cells = [", ".join(row[c]) if isinstance(row[c], list) else str(row[c]) for c in columns]
            table.add_row(*cells, mark[row["available"]], str(row["where"]))
        console.print(table)
    runnable = [row["name"] for row in result["metrics"] if row["available"]]
    console.print(f"metrics that can run now: {', '.join(runnable) or 'none'}")
    return 0


def _run_convert(args: list[str]) -> int:
    from reenact.convert import run_convert

    return run_convert(args)


def _run_preprocess(args: list[str]) -> int:
    from reenact.data.preprocess import run_preprocess

    return run_preprocess(args)


def _run_benchmark(args: list[str]) -> int:
    from reenact.comparison import run_benchmark

    return run_benchmark(args)


# -------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        console.print(TOP_HELP, highlight=False, markup=False, soft_wrap=True)
        return 0
    if args[0] in ("-V", "--version"):
        import reenact

        console.print(f"reenact {reenact.__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command in LIGHTNING_COMMANDS:
        return run_lightning(command, rest)
    handlers = {"predict": run_predict, "edit": run_edit, "models": run_models, "data": run_data,
                "doctor": run_doctor, "benchmark": _run_benchmark, "preprocess": _run_preprocess,
                "convert": _run_convert}
    if command not in handlers:
        error_console.print(f"reenact: unknown command {command!r}\n")
        console.print(TOP_HELP, highlight=False, markup=False, soft_wrap=True)
        return 2
    return handlers[command](rest)


if __name__ == "__main__":
    sys.exit(main())
