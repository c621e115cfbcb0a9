"""``reenact preprocess IN OUT``: the command line of :mod:`reenact.data.preprocess` (what it writes and the crop
rule are documented there)."""

from __future__ import annotations

from pathlib import Path

from reenact.argparsing import ArgumentParser
from reenact.data.preprocess import STATUSES, SUMMARY_FILE, InputFile, InputResult, PreprocessConfig, preprocess


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="reenact preprocess",
        description="Detect the face in raw videos or images, crop one stable square per clip, resize, and write "
                    "a FOMM-layout dataset (OUT/train, OUT/test, OUT/images for single images) with per-frame "
                    "annotations (68 landmarks, head pose) in OUT/annotations and a summary in "
                    "OUT/preprocess.json. Finished outputs are skipped on re-run unless --overwrite.",
        epilog="Crop: union of the per-frame face boxes (landmark box + forehead) of a clip, enlarged by "
               "--increase of its size on each side, made square around its centre; outside the frame the "
               "edge pixels are replicated. Example: reenact preprocess raw_videos/ data/mine --size 256",
    )
    parser.add_argument("input", metavar="IN", help="a video (mp4/avi/mov/mkv/webm/gif), an image "
                        "(png/jpg/jpeg/bmp/webp), or a folder searched recursively for both")
    parser.add_argument("out", metavar="OUT", help="output dataset root (created if missing)")
    parser.add_argument("--size", type=int, default=256, help="side of the square output frames (default: 256)")
    parser.add_argument("--split", choices=("auto", "train", "val", "test"), default="auto",
                        help="split of the videos; auto (default): a top-level train/, val/ or test/ folder of IN "
                             "is kept, everything else goes to train")
    parser.add_argument("--increase", type=float, default=0.1,
                        help="margin added on each side of the face box, as a fraction of its size (default: 0.1,"
                             " FOMM's increase_area; 0.3 gives looser, VoxCeleb-like framing)")
    parser.add_argument("--iou_threshold", type=float, default=0.25,
                        help="start a new clip (<name>_partNN) when a face box's IoU with the clip's first box "
                             "falls below this (default: 0.25, FOMM's iou_with_initial; 0: one crop per input)")
    parser.add_argument("--min_frames", type=int, default=2,
                        help="drop split-off clips shorter than this (default: 2)")
    parser.add_argument("--stride", type=int, default=1,
                        help="detect the face on every N-th frame to find the crop (default: 1, every frame)")
    parser.add_argument("--detect_size", type=int, default=640,
                        help="downscale frames to at most this longest side for detection (default: 640; 0: "
                             "full resolution)")
    parser.add_argument("--backend", default="dlib",
                        help="landmark backend: dlib (default), face-alignment, mediapipe")
    parser.add_argument("--format", dest="video_format", choices=("mp4", "png"), default="mp4",
                        help="store clips as H.264 mp4 (default) or as folders of PNG frames")
    parser.add_argument("--test_fraction", type=float, default=0.0,
                        help="put the videos of this fraction of the identities (<identity>/<clip>...) into test/, "
                             "identity-disjoint from train/ (default: 0; e.g. 0.2 gives a trainable, testable "
                             "dataset)")
    parser.add_argument("--overwrite", action="store_true", help="redo inputs whose outputs already exist")
    return parser


def run_preprocess(args: list[str]) -> int:
    """``reenact preprocess`` entry point; returns the exit status: 0 when at least one input gave (or already
    had) an output, 1 when none did (every input faceless, too short or unreadable)."""
    options = build_parser().parse_args(args)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    console = Console()
    try:
        config = PreprocessConfig(
            size=options.size, increase=options.increase, iou_threshold=options.iou_threshold,
            min_frames=options.min_frames, stride=options.stride, detect_size=options.detect_size,
            backend=options.backend, video_format=options.video_format, split=options.split,
            overwrite=options.overwrite, test_fraction=options.test_fraction,
        )
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("preprocessing", total=None)

            def start(inputs: list[InputFile]) -> None:
                progress.update(task, total=len(inputs), description=f"preprocessing {len(inputs)} input(s)")

            def done(item: InputFile, result: InputResult) -> None:
                progress.advance(task)
                if result.status == "unreadable":
                    progress.console.print(f"[red]unreadable, skipped:[/red] {result.message}")

            summary = preprocess(options.input, options.out, config, on_input=done, on_start=start)
    except (FileNotFoundError, ValueError, RuntimeError, KeyError) as error:
        raise SystemExit(f"reenact preprocess: {error}") from None
    counts = summary.counts()
    table = Table(title=f"preprocess {options.input} -> {options.out}")
    for status in STATUSES:
        table.add_column(status)
    table.add_row(*(str(counts[status]) for status in STATUSES))
    console.print(table)
    problems = summary.by_status("no-face") + summary.by_status("too-short") + summary.by_status("unreadable")
    if problems:
        detail = Table(title="inputs without output")
        for column in ("input", "status", "why"):
            detail.add_column(column, overflow="fold")
        for result in problems:
            detail.add_row(result.input, result.status, result.message)
        console.print(detail)
    images = [o["path"] for r in summary.by_status("processed") if r.kind == "image" for o in r.outputs]
    for path in images[:5]:
        console.print(f"cropped image: {Path(options.out) / path}")
    console.print(f"summary: {Path(options.out) / SUMMARY_FILE}")
    if not summary.by_status("processed") and not summary.by_status("skipped-existing"):
        console.print(f"[red]reenact preprocess: no input of {options.input} gave an output[/red]")
        return 1
    return 0


