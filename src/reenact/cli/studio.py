"""``reenact studio``: serve the editing and reenactment page for one checkpoint on a local address."""

from __future__ import annotations

from reenact.argparsing import ArgumentParser, positive_float
from reenact.cli.common import checkpoint_info, console


def studio_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="reenact studio",
        description="Edit and reenact faces in the browser: a local web page (Gradio) with one slider per LPMM "
                    "parameter and presets, or PECHead's yaw/pitch/roll and expression sliders, and a driving-video "
                    "upload that renders the reenacted video for every model. Needs the studio extra: "
                    'pip install -e ".[studio]".',
    )
    parser.add_argument("--ckpt", "--ckpt_path", dest="ckpt", required=True, help="trained reenact checkpoint")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the "
                             "network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--examples", metavar="DIR", help="folder of portraits offered as 'pick a source'")
    parser.add_argument("--expression_presets", metavar="FILE",
                        help="lpmm: preset library JSON (default: the user's library under $REENACT_CACHE)")
    parser.add_argument("--face_backend", default="dlib",
                        help="landmark backend of the face crops: dlib (default), face-alignment, mediapipe")
    parser.add_argument("--crop_increase", type=positive_float, default=0.1,
                        help="face-crop margin on each side, as a fraction of the face size (default 0.1)")
    parser.add_argument("--output_dir", metavar="DIR",
                        help="where reenacted videos are written (default: a fresh temporary folder)")
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, auto")
    return parser


def run_studio(args: list[str]) -> int:
    options = studio_parser().parse_args(args)
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise SystemExit('reenact studio: Gradio is not installed; install the studio extra: '
                         'pip install -e ".[studio]"') from None
    from pathlib import Path

    from reenact.cli.predict import resolve_device
    from reenact.studio.app import build_app, launch
    from reenact.studio.session import StudioError, StudioSession

    if not Path(options.ckpt).is_file():
        raise SystemExit(f"reenact studio: {options.ckpt} not found")
    if options.examples and not Path(options.examples).is_dir():
        raise SystemExit(f"reenact studio: --examples {options.examples}: not a folder")
    name, _ = checkpoint_info(options.ckpt)  # a file that is not a checkpoint fails here, before the server starts
    try:
        session = StudioSession.from_checkpoint(options.ckpt, device=resolve_device(options.device),
                                                presets_path=options.expression_presets,
                                                face_backend=options.face_backend,
                                                crop_increase=options.crop_increase)
    except StudioError as error:
        raise SystemExit(f"reenact studio: {error}") from None
    app = build_app(session, examples=options.examples, output_dir=options.output_dir)
    console.print(f"reenact studio: {name} checkpoint {options.ckpt}; open http://{options.host}:{options.port} "
                  "(Ctrl+C stops it)")
    launch(app, options.host, options.port,
           allowed_paths=[path for path in (options.examples, options.output_dir) if path])
    return 0
