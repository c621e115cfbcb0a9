"""``reenact benchmark``: train and evaluate several models under identical conditions, write one report.

See :mod:`reenact.comparison.plan` for the budget and stages, :mod:`reenact.comparison.runner` for the output
folder and resuming, :mod:`reenact.comparison.report` for the report's content.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from reenact.argparsing import ArgumentParser, normalise_flags
from reenact.comparison.plan import Stage, split_variant

console = Console()

DEFAULT_MODELS = "keypoint-warp,pechead,fsrt,lpmm,copy-source"
#: ``--quick``: the README's main job, on a step budget (each tiny preset's own ``trainer.max_steps``) so that it
#: reproduces on any machine; see README "Main job" for its time on 2 CPU cores.
QUICK = {"models": DEFAULT_MODELS, "preset": "tiny", "data": "synthetic", "budget": "preset", "eval_pairs": 8}
#: Evaluation protocols of the same-identity test (``--protocol``): the datamodule options each sets.
#: ``fsrt`` (FSRT Sec. 4.1, the default): source frame 0 (and the last frame for two sources), every 10th frame,
#: each at least 10 frames from any source. ``fomm``: source frame 0, every frame from frame 0 on.
PROTOCOL_ARGS: dict[str, list[str]] = {
    "fsrt": ["--data.eval_frame_stride", "10", "--data.eval_min_source_distance", "10",
             "--data.eval_source_placement", "ends"],
    "fomm": ["--data.eval_frame_stride", "1", "--data.eval_min_source_distance", "0",
             "--data.eval_source_placement", "spread"],
}
#: Trainer/data options the benchmark sets for every stage; passing them through would be silently overridden.
BENCHMARK_OWNED = ("--trainer.max_steps", "--trainer.max_time", "--trainer.limit_val_batches",
                   "--trainer.num_sanity_val_steps", "--data.seed", "--data.root")
#: Settings that must match to resume into an existing ``--out`` folder.
RESUME_KEYS = ("preset", "data", "budget", "seed", "trainer_args", "evaluation_args", "checkpoints")

EPILOG = """\
examples:
  reenact benchmark --quick --out bench/quick
  reenact benchmark --models pechead,fsrt,lpmm,copy-source --data synthetic --preset tiny --budget 300 --out bench/a
  reenact benchmark --models fsrt,lia --data /data/vox --preset paper --budget 120min --devices 4 --strategy ddp \\
      --out bench/vox
  reenact benchmark --models pechead,copy-source --ckpt pechead=pechead.ckpt --out bench/released
  reenact benchmark --models pechead:kp,pechead:lmk,pechead:direct,pechead:featcat,pechead:mmfa,pechead:full,\
copy-source --out bench/pechead_table4

Any --trainer.X VALUE or --data.X VALUE is passed to every stage (e.g. --data.num_workers 4).
Re-running the same command resumes: finished stages are skipped, an interrupted training resumes from its
last checkpoint. --budget: STEPS (optimiser steps of each model's main stage; e.g. 300; default: each preset's
own max_steps), a multiple of every preset's steps (e.g. 4x), or a time per model (e.g. 2.5min, 90s) converted
once to steps from a 20-step warm-up of every stage on this machine (written in the report), so that training
itself is always step-counted.
"""


def parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="reenact benchmark", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Train every model with one shared Trainer configuration, data and seed, evaluate all of them "
                    "with the same protocols and metrics, and write report.md, report.json and PNG pictures.")
    p.add_argument("--models", default=None,
                   help=f"comma-separated registry names, or NAME:VARIANT for one of a model's ablation settings "
                        f"(e.g. pechead:kp,pechead:full: PECHead Table 4; default: {DEFAULT_MODELS})")
    p.add_argument("--data", default=None, help="'synthetic' (the embedded dataset, default) or a FOMM-layout root")
    p.add_argument("--preset", default=None, help="preset of every model: tiny (default) or paper")
    p.add_argument("--budget", default=None,
                   help="training budget per model: STEPS (e.g. 300), a multiple of each preset's steps (e.g. 4x) or "
                        "a time (e.g. 2.5min) converted to steps from a measured warm-up; default: the presets' own")
    p.add_argument("--out", required=True, help="output folder (report, pictures, per-stage logs and checkpoints)")
    p.add_argument("--ckpt_path", "--ckpt", dest="ckpt", action="append", default=[], metavar="MODEL=PATH",
                   help="evaluate this checkpoint instead of training MODEL (repeatable); lia=PATH also serves as "
                        "lpmm's backbone")
    p.add_argument("--quick", action="store_true",
                   help=f"the README's main job: {QUICK['models']} at the tiny preset on the synthetic data, "
                        "each trained for its tiny preset's own step count, the quick metrics, FSRT's protocol")
    p.add_argument("--devices", default=None, help="trainer.devices for every stage (e.g. 2)")
    p.add_argument("--strategy", default=None, help="trainer.strategy for every stage (e.g. ddp)")
    p.add_argument("--accelerator", default=None, help="trainer.accelerator for every stage (cpu, gpu, auto)")
    p.add_argument("--seed", type=int, default=0, help="seed of every stage: weights, data order, pairs (default 0)")
    p.add_argument("--metrics", default=None,
                   help="comma-separated metrics for every model (default: the quick set for tiny, the papers' "
                        "full set for paper)")
    p.add_argument("--protocol", choices=sorted(PROTOCOL_ARGS), default="fsrt",
                   help="test frames: fsrt (default; FSRT Sec. 4.1: source frame 0, every 10th frame at least 10 "
                        "frames from the source) or fomm (every frame from frame 0)")
    p.add_argument("--eval_frames", type=int, default=None,
                   help="at most this many frames evaluated per test video (default: all the protocol selects)")
    p.add_argument("--eval_pairs", type=int, default=None, help="cross-identity pairs (default: 20)")
    p.add_argument("--samples", type=int, default=3, help="test clips in the sample grid (default 3)")
    p.add_argument("--overwrite", action="store_true",
                   help="start again in an --out folder that holds a benchmark with other settings")
    return p


def _resolve(options: argparse.Namespace) -> argparse.Namespace:
    if options.quick:
        for key, value in QUICK.items():
            if getattr(options, key) is None:
                setattr(options, key, value)
    options.models = [m.strip() for m in (options.models or DEFAULT_MODELS).split(",") if m.strip()]
    options.preset = options.preset or "tiny"
    options.data = options.data or "synthetic"
    return options


def _checkpoints(values: list[str]) -> dict[str, str]:
    from reenact.checkpoints import CheckpointError, checkpoint_info

    checkpoints = {}
    for value in values:
        if "=" not in value:
            raise SystemExit(f"reenact benchmark: --ckpt_path {value!r}: expected MODEL=PATH")
        name, path = value.split("=", 1)
        try:
            stored, _ = checkpoint_info(path)
        except (FileNotFoundError, CheckpointError) as error:  # names the file and what is wrong with it
            raise SystemExit(f"reenact benchmark: {error}") from None
        if stored is not None and stored != name:
            raise SystemExit(f"reenact benchmark: {path} holds a {stored!r} model, not {name!r}")
        checkpoints[name] = str(Path(path).resolve())
    return checkpoints


def _check_data(data: str) -> tuple[str | None, str]:
    """(root passed to the stages, description); a bad root stops here, naming each problem."""
    if data == "synthetic":
        from reenact.data.synthetic import ensure_default_dataset

        root = ensure_default_dataset(progress=True)  # built once here, not raced by the stages
        return None, f"embedded synthetic dataset ({root})"
    from reenact.data.checks import check_dataset

    root = Path(data).resolve()
    report = check_dataset(root)
    if not report.ok:
        console.print(report.render())
        raise SystemExit(f"reenact benchmark: {root}: dataset cannot be used (errors above)")
    return str(root), str(root)


def _image_sizes(models: list[str], preset: str) -> dict[str, int]:
    from reenact.registry import preset_config

    sizes = {}
    for name in models:
        try:
            sizes[name] = int((preset_config(split_variant(name)[0], preset).get("model") or {}).get("image_size", 64))
        except FileNotFoundError as error:
            raise SystemExit(f"reenact benchmark: {error}") from None
    if len(set(sizes.values())) > 1:
        raise SystemExit(f"reenact benchmark: the {preset!r} presets work at different sizes ({sizes}); a comparison "
                         "needs one size")
    return sizes


def _settings(options: argparse.Namespace, checkpoints: dict[str, str], budget: Any, data_root: str | None,
              dataset: str) -> dict[str, Any]:
    from reenact.metrics import DEFAULT_METRICS, QUICK_METRICS, list_metrics

    trainer_args: list[str] = list(options.passthrough)
    for option in ("devices", "strategy", "accelerator"):
        if getattr(options, option) is not None:
            trainer_args += [f"--trainer.{option}", str(getattr(options, option))]
    if options.metrics:
        metrics = [m.strip() for m in options.metrics.split(",") if m.strip()]
    else:
        metrics = list(QUICK_METRICS if options.preset == "tiny" else DEFAULT_METRICS)
    unknown = sorted(set(metrics) - set(list_metrics()))
    if unknown:
        raise SystemExit(f"reenact benchmark: unknown metrics {unknown}; registered: {', '.join(list_metrics())}")
    evaluation_args = ["--evaluation.metrics", json.dumps(metrics), "--evaluation.relative", "false",
                       *PROTOCOL_ARGS[options.protocol]]
    described = f"metrics {', '.join(metrics)}; absolute motion; protocol {options.protocol}" + (
        " (source frame 0, every 10th frame at least 10 frames from the source; FSRT Sec. 4.1)"
        if options.protocol == "fsrt" else " (source frame 0, every frame)")
    if options.eval_frames is not None:
        evaluation_args += ["--data.max_frames_per_video", str(options.eval_frames)]
        described += f"; {options.eval_frames} frames per test video"
    if options.eval_pairs is not None:
        evaluation_args += ["--data.num_cross_identity_pairs", str(options.eval_pairs)]
        described += f"; {options.eval_pairs} cross-identity pairs"
    from reenact.comparison.report import training_losses
    from reenact.registry import preset_config

    losses = {name: training_losses(dict(preset_config(split_variant(name)[0], options.preset).get("model") or {}))
              for name in options.models}
    return {"models": options.models, "preset": options.preset, "data": options.data, "data_root": data_root,
            "training_losses": {name: text for name, text in losses.items() if text},
            "dataset": dataset, "budget": budget.to_dict(), "seed": options.seed, "trainer_args": trainer_args,
            "protocol": options.protocol,
            "evaluation_args": evaluation_args, "evaluation": described, "metrics": metrics,
            "checkpoints": checkpoints, "quick": options.quick,
            "command": " ".join(["reenact", "benchmark", *options.raw_args])}


def _prepare_out(out: Path, settings: dict[str, Any], overwrite: bool) -> None:
    from reenact.comparison.runner import write_json

    stored_path = out / "benchmark.json"
    if stored_path.is_file():
        stored = json.loads(stored_path.read_text())
        changed = [k for k in RESUME_KEYS if stored.get(k) != settings.get(k)]
        if changed and not overwrite:
            raise SystemExit(f"reenact benchmark: {out} holds a benchmark with other settings ({', '.join(changed)} "
                             "differ); use another --out, the same settings to resume, or --overwrite to start again")
        if overwrite:
            shutil.rmtree(out / "stages", ignore_errors=True)
    elif out.exists() and any(out.iterdir()) and not overwrite:
        raise SystemExit(f"reenact benchmark: {out} exists, is not empty and holds no benchmark.json; "
                         "use another --out or --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    write_json(stored_path, settings)


def _protocol_kwargs(evaluation_args: list[str]) -> dict[str, Any]:
    """The ``ReenactDataModule`` keyword arguments that ``--data.X V`` pairs in ``evaluation_args`` set."""
    kwargs: dict[str, Any] = {}
    for option, value in zip(evaluation_args[::2], evaluation_args[1::2], strict=True):
        if option.startswith("--data.eval_"):
            key = option.removeprefix("--data.")
            kwargs[key] = value if key == "eval_source_placement" else int(value)
        elif option == "--data.num_cross_identity_pairs":
            kwargs["num_cross_identity_pairs"] = int(value)
        elif option == "--data.max_frames_per_video":
            kwargs["max_frames_per_video"] = int(value)
    return kwargs


def _samples(settings: dict[str, Any], records: dict[str, dict[str, Any]], size: int, count: int,
             out: Path) -> str | None:
    """Animate the first ``count`` same-identity test videos and cross-identity pairs with every evaluated model,
    on the benchmark's own protocol frames: one grid (first and last evaluated driving frame of each clip)."""
    import torch

    from reenact.comparison.report import sample_grid
    from reenact.data import ReenactDataModule
    from reenact.registry import create_model, load_from_checkpoint

    if count <= 0:
        return None
    kwargs = {"num_cross_identity_pairs": 20, **_protocol_kwargs(settings["evaluation_args"])}
    datamodule = ReenactDataModule(root=settings["data_root"], image_size=size, seed=settings["seed"], **kwargs)
    datamodule.setup("test")
    clips = []
    for label, loader in zip(("same", "cross"), datamodule.test_dataloader(), strict=True):
        for index, batch in enumerate(loader):
            if index >= count:
                break
            clips.append((label, batch))
    models = [name for name, record in records.items() if record.get("results") is not None]
    outputs: dict[str, list[torch.Tensor]] = {}
    for name in models:
        checkpoint = record_checkpoint(records[name])
        model = (load_from_checkpoint(checkpoint) if checkpoint
                 else create_model(split_variant(name)[0], settings["preset"]))
        model.eval()
        with torch.no_grad():
            outputs[name] = [model.generate_video(clip["source"][:1], clip["driving"][:1], relative=False)
                             for _, clip in clips]
        del model
    rows = []
    for c, (label, clip) in enumerate(clips):
        frames = clip["driving"].shape[1]
        for t in sorted({0, frames - 1}):
            frame = int(clip["driving_index"][0, t])
            images = [clip["source"][0, 0], clip["driving"][0, t], *[outputs[m][c][0, t] for m in models]]
            # The pair's video names are too long for a row label; the source's identity and the frame say enough.
            rows.append({"label": f"{label} {clip['source_identity'][0]} f{frame}",
                         "images": [image.clamp(0, 1).permute(1, 2, 0).float().numpy() for image in images]})
    return sample_grid(rows, models, out)


def _stage_total(stage: Stage) -> float | None:
    """Progress-bar length of a stage: 100 (percent) for training, None (a spinner) for evaluation."""
    return 100.0 if stage.command == "fit" else None


def _stage_done(stage: Stage, seconds: float, step: int | None) -> float:
    """Percent of a training stage done, by steps."""
    if step is None or not stage.max_steps:
        return 0.0
    return 100.0 * min(1.0, step / stage.max_steps)


def _stage_text(stage: Stage, seconds: float, step: int | None) -> str:
    text = f"  {stage.key}: {seconds:.0f} s"
    if stage.command == "fit" and step is not None:
        text += f", step {step}/{stage.max_steps}"
    return text


def record_checkpoint(record: dict[str, Any]) -> str | None:
    """The checkpoint a model was evaluated with (None: nothing to load, e.g. copy-source)."""
    for stage in record["stages"]:
        if stage["command"] == "test":
            args = stage.get("args") or []
            if "--ckpt_path" in args:
                return args[args.index("--ckpt_path") + 1]
    return None


def split_passthrough(args: list[str]) -> tuple[list[str], list[str]]:
    """``(the benchmark's own arguments, Lightning options for every stage)``: ``--trainer.X V`` and ``--data.X V``
    (or ``--trainer.X=V``) pass through to each stage's ``reenact fit``/``test``; the value after such an option
    belongs to it even when it looks like an option (``-1``)."""
    own: list[str] = []
    extra: list[str] = []
    expects_value = False
    for argument in args:
        if expects_value:
            extra.append(argument)
            expects_value = False
        elif argument.split("=", 1)[0].startswith(("--trainer.", "--data.")):
            extra.append(argument)
            expects_value = "=" not in argument
        else:
            own.append(argument)
    return own, extra


def run_benchmark(args: list[str]) -> int:
    from reenact.comparison.plan import Budget, plan
    from reenact.comparison.report import bar_charts, build_payload, loss_curves, markdown
    from reenact.comparison.runner import StageChanged, StageFailed, StageRunner, write_json
    from reenact.registry import get_entry

    own, extra = split_passthrough(normalise_flags(args))
    options = parser().parse_args(own)  # anything not the benchmark's own nor passed through is an error here
    owned = [a for a in extra if a.split("=", 1)[0] in BENCHMARK_OWNED]
    if owned:
        parser().error(f"{' '.join(owned)}: the benchmark sets these itself (training length: --budget; validation "
                       "is off during training, the test stage evaluates; seeds: --seed)")
    options.passthrough = extra
    options.raw_args = args
    options = _resolve(options)
    # Everything that can be wrong is checked before the first stage starts.
    try:
        budget = Budget.parse(options.budget)
        checkpoints = _checkpoints(options.ckpt)
        stages = plan(options.models, options.preset, budget, checkpoints)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"reenact benchmark: {error}") from None
    sizes = _image_sizes(options.models, options.preset)
    data_root, dataset = _check_data(options.data)
    settings = _settings(options, checkpoints, budget, data_root, dataset)
    out = Path(options.out).resolve()
    _prepare_out(out, settings, options.overwrite)
    runner = StageRunner(out, options.preset, data_root, options.seed, settings["trainer_args"],
                         settings["evaluation_args"])
    if budget.seconds is not None:
        # A time budget is converted to steps once, from a measured warm-up: training itself is step-counted.
        from reenact.comparison.calibrate import calibrate

        console.print(f"converting {budget.describe()} to steps: a {budget.seconds:g} s budget, warm-up of each stage")
        try:
            calibration = calibrate(options.models, options.preset, budget, checkpoints, runner, out)
        except StageFailed as error:
            raise SystemExit(f"reenact benchmark: the warm-up failed: {error}") from None
        stages = plan(options.models, options.preset, budget, checkpoints,
                      {name: entry["steps"] for name, entry in calibration["models"].items()})
        settings["calibration"] = calibration
        write_json(out / "benchmark.json", settings)
    try:
        done_records = {stage.key: runner.done(stage) for stage in stages}
    except StageChanged as error:
        raise SystemExit(f"reenact benchmark: {error}; use another --out or --overwrite") from None

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    records: dict[str, dict[str, Any]] = {}
    for name in options.models:
        records[name] = {"trainable": get_entry(split_variant(name)[0]).load_class().trainable, "stages": [],
                         "train_seconds": 0.0, "test_seconds": 0.0, "results": None, "error": None}
    failed: dict[str, str] = {}
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("benchmark", total=len(stages), note=f"0/{len(stages)} stages")
        for stage in stages:
            blocked = [key for key in stage.checkpoint_args.values() if key in failed]
            record = done_records[stage.key]
            if record is None and blocked:
                failed[stage.key] = f"needs stage {blocked[0]!r}, which failed"
            elif record is None:
                progress.update(overall, description=f"{stage.command} {stage.key}")
                current = progress.add_task(f"  {stage.key}", total=_stage_total(stage), note="")

                def show(seconds: float, step: int | None, task: Any = current, stage: Stage = stage) -> None:
                    done = _stage_done(stage, seconds, step)
                    progress.update(task, completed=done, description=_stage_text(stage, seconds, step),
                                    note=f"{done:.0f}%" if stage.command == "fit" else "")

                try:
                    record = runner.run(stage, show)
                except StageFailed as error:
                    failed[stage.key] = str(error)
                    console.print(f"[red]{error}[/red]")
                finally:
                    progress.remove_task(current)
            else:
                progress.console.print(f"{stage.key}: finished earlier ({record['seconds']:.0f} s), skipped")
            progress.advance(overall)
            progress.update(overall, note=f"{int(progress.tasks[overall].completed)}/{len(stages)} stages")
            model = records[stage.owner]
            entry = {**stage.to_dict(), **(record or {}), "error": failed.get(stage.key)}
            entry.pop("stage", None)
            if record is not None and stage.command == "test":
                entry["args"] = [*stage.args, *[a for o, k in stage.checkpoint_args.items()
                                                for a in (o, runner.checkpoint(k))]]
            model["stages"].append(entry)
            if record is None:
                model["error"] = failed[stage.key]
            elif stage.command == "fit":
                model["train_seconds"] += record["seconds"]
            else:
                model["test_seconds"] += record["seconds"]
                model["results"] = json.loads(Path(record["results"]).read_text())

    finished = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    payload = build_payload(settings, records, started, finished)
    pictures = bar_charts(payload, out)
    losses = loss_curves(records, out)
    if losses:
        pictures["losses"] = losses
    done_files = list((out / "stages").glob("*/done.json"))
    grid = out / "samples.png"
    try:
        if grid.is_file() and not failed and all(f.stat().st_mtime < grid.stat().st_mtime for f in done_files):
            samples = grid.name  # every model is as it was when the grid was drawn
        else:
            samples = _samples(settings, records, next(iter(sizes.values())), options.samples, out)
    except Exception as error:  # the report must still be written; say why the grid is missing
        samples = None
        payload["samples_error"] = f"{type(error).__name__}: {error}"
        console.print(f"[yellow]sample grid not written: {error}[/yellow]")
    if samples:
        pictures["samples"] = samples
    payload["pictures"] = pictures
    write_json(out / "report.json", payload)
    from reenact.data.video import atomic_path

    with atomic_path(out / "report.md") as temporary:
        temporary.write_text(markdown(payload))
    _print_summary(payload)
    console.print(f"report: {out / 'report.md'} and {out / 'report.json'}")
    if failed:
        console.print(f"[red]{len(failed)} stage(s) failed: {', '.join(failed)}; logs under {out / 'stages'}[/red]")
        return 1
    return 0


def _print_summary(payload: dict[str, Any]) -> None:
    from reenact.evaluation import format_value as _format

    for protocol, table in payload["protocols"].items():
        view = Table(title=protocol)
        view.add_column("model")
        for metric in table["metrics"]:
            view.add_column(f"{metric} {'↑' if table['higher_is_better'][metric] else '↓'}", justify="right")
        for model, row in table["rows"].items():
            cells = []
            for metric in table["metrics"]:
                cell = row.get(metric)
                text = "—" if cell is None else _format(cell["value"])
                cells.append(f"[bold]{text}[/bold]" if model in table["best"].get(metric, []) else text)
            view.add_row(model, *cells)
        console.print(view)
    for check in payload["floor"]["checks"]:
        if check["beats"] is False:
            console.print(f"[yellow]{check['model']} does not beat copy-source on {check['metric']} "
                          f"({_format(check['value'])} vs {_format(check['reference'])})[/yellow]")
