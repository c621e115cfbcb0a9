"""Evaluation results: one payload written as ``results.json`` (machines) and ``results.md`` (people).

Payload layout (``results.json``)::

    {"model": "copy-source", "checkpoint": null, "reenact_version": "0.1.0", "dataset": {...},
     "relative": false, "created": "2026-11-22T00:00:00Z",
     "protocols": {"same_identity": {"videos": 8, "frames": 256,
                                      "metrics": [{"name", "value", "backend", "count",
                                                   "higher_is_better", "reason", "details"}, ...]},
                   "cross_identity": {..., "pairs": [["src", "drv"], ...]},
                   "editing": {"videos": 10, "frames": 40, "metrics": [...],
                               "tasks": {"frontalisation": {"images": 16, "metrics": ["are", "fid"], "what": "..."},
                                         "expression_transfer": {"images": 24, "metrics": ["auh"], "what": "..."}}}}}

``editing`` (PECHead Table 3) is present only for models that can edit (``ReenactmentModule.supports_editing``);
its ``frames`` are edited images and ``tasks`` says which task's outputs each metric scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.table import Table

from reenact.data.video import atomic_path, atomic_write_json


def format_value(value: float | None) -> str:
    """A metric value for tables: 4 decimals below 100, 2 above; ``n/a`` for no value."""
    if value is None:
        return "n/a"
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f"{value:.4f}" if abs(value) < 100 else f"{value:.2f}"


def results_rows(payload: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(protocol, metric, value, frames, backend or reason) rows, in the order they were computed."""
    rows = []
    for protocol, section in payload["protocols"].items():
        for metric in section["metrics"]:
            arrow = "↑" if metric["higher_is_better"] else "↓"
            note = metric["backend"] if metric["reason"] is None else f"unavailable: {metric['reason']}"
            rows.append((protocol, f"{metric['name']} {arrow}", format_value(metric["value"]), str(metric["count"]),
                         note))
        if not section["metrics"]:
            rows.append((protocol, "-", "n/a", str(section["frames"]),
                         "no registered metric applies to this protocol"))
    return rows


def results_table(payload: dict[str, Any]) -> Table:
    table = Table(title=f"{payload['model']} — evaluation", show_lines=False)
    for column in ("protocol", "metric", "value", "frames", "backend"):
        table.add_column(column, overflow="fold")
    for row in results_rows(payload):
        table.add_row(*row)
    return table


def results_markdown(payload: dict[str, Any]) -> str:
    dataset = payload.get("dataset") or {}
    lines = [
        f"# Evaluation of `{payload['model']}`",
        "",
        f"- checkpoint: `{payload.get('checkpoint')}`",
        *(["- **untrained**: a trainable model scored with its initial weights (`--untrained`); these numbers "
            "measure no learning"] if payload.get("untrained") else []),
        f"- dataset: `{dataset.get('root')}` ({dataset.get('image_size')} px)",
        f"- motion: {'relative' if payload.get('relative') else 'absolute'}",
        f"- reenact {payload.get('reenact_version')}, written {payload.get('created')}",
        "",
    ]
    for protocol, section in payload["protocols"].items():
        lines += [f"## {protocol}", "", f"{section['videos']} videos, {section['frames']} frames.", ""]
        lines += ["| metric | value | frames | backend |", "|---|---|---|---|"]
        for metric in section["metrics"]:
            arrow = "↑" if metric["higher_is_better"] else "↓"
            note = metric["backend"] if metric["reason"] is None else f"unavailable: {metric['reason']}"
            note = note.replace("|", "\\|")  # a literal pipe would split the Markdown table cell
            lines.append(f"| {metric['name']} {arrow} | {format_value(metric['value'])} | {metric['count']} | {note} |")
        if not section["metrics"]:
            lines.append("| - | n/a | - | no registered metric applies to this protocol |")
        if section.get("pairs"):
            lines += ["", f"Pairs (source, driving): {len(section['pairs'])}, listed in results.json."]
        if section.get("tasks"):
            lines += ["", "Tasks (each metric scores only its task's images):", ""]
            for task, info in section["tasks"].items():
                scored = ", ".join(info.get("metrics") or []) or "no selected metric"
                lines.append(f"- {task} ({info.get('images', 0)} images; {scored}): {info.get('what', '')}")
        lines.append("")
    return "\n".join(lines)


def write_results(directory: str | Path, payload: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``results.json`` and ``results.md`` atomically into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / "results.json", directory / "results.md"
    atomic_write_json(json_path, payload)
    with atomic_path(md_path) as temporary:
        temporary.write_text(results_markdown(payload))
    return json_path, md_path
