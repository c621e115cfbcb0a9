"""``reenact models``, ``reenact doctor`` and ``reenact data check|annotate|synth``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from reenact.argparsing import ArgumentParser, positive_int
from reenact.cli.common import console, error_console


def run_models(args: list[str]) -> int:
    parser = ArgumentParser(prog="reenact models", description="List registered models and presets.")
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


def run_doctor(args: list[str]) -> int:
    parser = ArgumentParser(
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


def run_data(args: list[str]) -> int:
    parser = ArgumentParser(prog="reenact data", description="Dataset tools.")
    commands = parser.add_subcommands(required=True, dest="command")
    check = ArgumentParser(prog="reenact data check", config_file=False)
    check.add_argument("root", help="dataset root with train/ and test/ (optional val/)")
    check.add_argument("--min_frames", type=positive_int, default=2, help="shortest usable video (default: 2)")
    check.add_argument("--require_annotations", action="store_true", help="treat missing annotations as errors")
    check.add_argument("--json", dest="json_out", help="also write the report as JSON to this file")
    commands.add_subcommand("check", check, help="check a FOMM-layout dataset and name every problem")
    annotate = ArgumentParser(prog="reenact data annotate", config_file=False)
    annotate.add_argument("root", help="dataset root with train/ and test/ (optional val/)")
    annotate.add_argument("--backend", default="dlib", help="landmark backend: dlib (default), face-alignment, "
                                                            "mediapipe")
    annotate.add_argument("--overwrite", action="store_true", help="re-annotate videos that already have a file")
    annotate.add_argument("--json", dest="json_out", help="also write the summary as JSON to this file")
    commands.add_subcommand("annotate", annotate, help="write 68 landmarks and head pose per frame with a landmark "
                                                       "backend (annotations/<split>/<video>.npz)")
    synth = ArgumentParser(prog="reenact data synth", config_file=False)
    synth.add_argument("--out", required=True, help="output root (FOMM layout + annotations/)")
    synth.add_argument("--videos", type=positive_int, default=40, help="number of videos (default: 40)")
    synth.add_argument("--frames", type=positive_int, default=32, help="frames per video (default: 32)")
    synth.add_argument("--size", type=positive_int, default=128, help="frame size in pixels (default: 128)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--format", choices=("mp4", "png"), default="mp4", help="videos or PNG folders")
    synth.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    commands.add_subcommand("synth", synth, help="write a synthetic talking-head dataset with ground truth")
    parsed = parser.parse_args(args)
    # The chosen subcommand's options sit in a group of its name (jsonargparse's subcommand layout).
    options = parsed[parsed.command]
    options.command = parsed.command

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


def _annotate(options: Any) -> int:
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
