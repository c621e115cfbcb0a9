"""``reenact edit``: a portrait edited with a model's control parameters, to an image or swept to a video.

LPMM (paper 004 Sec. 4.4): landmark parameters in standard deviations, expression presets, scaling, base pose
(:mod:`reenact.models.lpmm.control`). PECHead (paper 000 Sec. 4.3): head angles and expression coefficients
(:mod:`reenact.models.pechead.control`).
"""

from __future__ import annotations

import argparse

from reenact.argparsing import ArgumentParser, positive_float, positive_int
from reenact.cli.common import checkpoint_info, console, output_path, read_frames, sidecar_path


def parse_assignments(values: list[str], flag: str) -> dict[int, float]:
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


def edit_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="reenact edit",
        description="Edit a portrait with a model's control parameters, to an image or as a sweep to a video. "
                    "lpmm (Sec. 4.4): landmark-parameter offsets/values in standard deviations, presets, scaling, "
                    "base pose, head angles in degrees through its fitted pose map. pechead (Sec. 4.3): absolute or "
                    "relative yaw/pitch/roll (frontalisation, both models: --yaw 0 "
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
    parser.add_argument("--expression_preset", metavar="NAME",
                        help="lpmm: named expression preset (e.g. surprise) added on top, or a one-preset JSON file")
    parser.add_argument("--expression_presets", metavar="FILE",
                        help="lpmm: expression preset library JSON (default: the built-in presets and the user's "
                             "library under $REENACT_CACHE)")
    # `--preset` names a config preset in fit/validate/test; here it would mean something else, so it is refused.
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--base", choices=("image", "zero"), default="image",
                        help="start from the driving image's parameters or the base pose p = 0")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the final parameters (interpolation)")
    parser.add_argument("--yaw", type=float, help="yaw in degrees (angles not given keep the source's); lpmm "
                                                         "through its pose map")
    parser.add_argument("--pitch", type=float, help="pitch in degrees")
    parser.add_argument("--roll", type=float, help="roll in degrees")
    parser.add_argument("--relative_pose", action="store_true", help="add the angles to the source's pose")
    parser.add_argument("--expression_from", help="pechead: image whose expression is transferred")
    parser.add_argument("--expression_scale", type=float, default=1.0, help="pechead: scale the expression")
    parser.add_argument("--sweep", metavar="P", help="sweep one parameter and write a video: lpmm: an index, "
                                                     "yaw, pitch or roll; pechead: yaw, pitch, roll or expr:I")
    parser.add_argument("--sweep_from", type=float, default=-3.0, help="sweep start (default -3; degrees for angles)")
    parser.add_argument("--sweep_to", type=float, default=3.0, help="sweep end (default 3)")
    parser.add_argument("--steps", type=positive_int, default=31, help="sweep frames (default 31)")
    parser.add_argument("--fps", type=positive_float, default=15.0, help="sweep video frame rate (default 15)")
    parser.add_argument("-o", "--out", required=True, help="output .png (edit) or .mp4/.gif (sweep)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return parser


def run_edit(args: list[str]) -> int:
    options = edit_parser().parse_args(args)
    if options.preset is not None:
        raise SystemExit(f"reenact edit: --preset names a config preset in fit/validate/test; for an LPMM expression "
                         f"preset use --expression_preset {options.preset}")

    import numpy as np
    import torch

    from reenact.data.video import atomic_path, atomic_write_json, write_video
    from reenact.models import load_from_checkpoint

    out = output_path(options.out, options.overwrite, "edit")
    video_out = out.suffix.lower() in (".mp4", ".mov", ".avi", ".gif", ".mkv")
    if options.sweep is not None and not video_out:
        raise SystemExit(f"reenact edit: --sweep writes a video; {out} should end in .mp4/.gif")
    if options.sweep is None and out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise SystemExit(f"reenact edit: {out}: an edit writes an image (.png/.jpg)")
    offsets = parse_assignments(options.param, "--param")
    absolute = parse_assignments(options.set, "--set")
    low, high = options.sweep_from, options.sweep_to
    stored_name, _ = checkpoint_info(options.ckpt)
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
    source = read_frames(options.source, model.image_size, "edit", still=True)
    values = torch.linspace(low, high, options.steps).tolist()
    with torch.no_grad():
        if stored_name == "pechead":
            from reenact.models.pechead import control as pechead_control

            expression_from = (read_frames(options.expression_from, model.image_size, "edit", still=True)
                               if options.expression_from else None)
            edit = pechead_control.PoseExpressionEdit(
                yaw=options.yaw, pitch=options.pitch, roll=options.roll, relative_pose=options.relative_pose,
                set_values=absolute, offsets=offsets, expression_scale=options.expression_scale)
            try:
                frames = (pechead_control.render(model, source, edit, expression_from) if options.sweep is None
                          else pechead_control.sweep(model, source, edit, options.sweep, values, expression_from))
            except ValueError as error:
                raise SystemExit(f"reenact edit: {error}") from None
        else:
            from reenact.models.lpmm import control

            driving = read_frames(options.driving, model.image_size, "edit", still=True) if options.driving else None
            if options.sweep in ("yaw", "pitch", "roll"):
                from reenact.models.lpmm.posemap import PoseNotFittedError

                try:
                    frames = torch.cat([control.edit(model, source, base=options.base,
                                                     relative_pose=options.relative_pose, **{options.sweep: value})
                                        for value in values])
                except (ValueError, PoseNotFittedError) as error:
                    raise SystemExit(f"reenact edit: {error.args[0]}") from None
            elif options.sweep is not None:
                try:
                    index = int(options.sweep)
                except ValueError:
                    raise SystemExit(f"reenact edit: lpmm sweeps a parameter index, not {options.sweep!r}") from None
                if not 0 <= index < model.pca.num_components:
                    raise SystemExit(f"reenact edit: --sweep {index}: this LPMM has parameters "
                                     f"0..{model.pca.num_components - 1}")
                frames = control.sweep(model, source, index, values, base=options.base)
            else:
                from reenact.models.lpmm.posemap import PoseNotFittedError

                try:
                    frames = control.edit(model, source, offsets, options.expression_preset, driving=driving,
                                          set_values=absolute, base=options.base, scale=options.scale,
                                          presets_path=options.expression_presets, yaw=options.yaw,
                                          pitch=options.pitch, roll=options.roll,
                                          relative_pose=options.relative_pose)
                except (KeyError, ValueError, PoseNotFittedError) as error:  # unknown preset, bad file, no map
                    raise SystemExit(f"reenact edit: {error.args[0]}") from None
    array = (frames.clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    if options.sweep is not None:
        write_video(out, array, fps=options.fps)
    else:
        from PIL import Image

        with atomic_path(out) as temporary:
            Image.fromarray(array[0]).save(temporary, format="PNG" if out.suffix.lower() == ".png" else "JPEG")
    summary = {"model": stored_name, "checkpoint": options.ckpt, "source": options.source, "output": str(out),
               "offsets": offsets, "set": absolute, "expression_preset": options.expression_preset,
               "base": options.base,
               "scale": options.scale, "sweep": options.sweep, "range": [low, high], "frames": int(array.shape[0]),
               "pose": {"yaw": options.yaw, "pitch": options.pitch, "roll": options.roll,
                        "relative": options.relative_pose}, "expression_scale": options.expression_scale}
    json_path = atomic_write_json(sidecar_path(out), summary)
    console.print(f"wrote {out} and {json_path}")
    return 0
