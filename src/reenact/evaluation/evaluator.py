"""The protocols' metric loop, shared by every model (see :mod:`reenact.models.base` for the protocols).

:class:`ProtocolEvaluator` holds one set of metrics per protocol (``same_identity``, ``cross_identity`` and, in
test for models that can edit, ``editing``) plus video/frame counts, all torchmetrics ``Metric`` objects: a
LightningModule owns it as a submodule, so they move to its device and reduce over DDP processes on
``compute``. Their states are not persistent (nothing of this reaches a checkpoint).

Editing protocol (PECHead Table 3, Sec. 4.3): its inputs are taken from the two protocols' batches, every
``stride``-th driving frame (0 included): same-identity batches give *frontalisations* (``yaw = pitch = roll = 0``,
scored by ARE/FID), cross-identity batches *expression transfers* (the source gets each driving frame's
expression; AUH). Metrics are routed by ``ReenactMetric.editing_tasks``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torchmetrics import SumMetric

from reenact.metrics import (
    CROSS_IDENTITY,
    EDITING,
    EXPRESSION_TRANSFER,
    FRONTALISATION,
    SAME_IDENTITY,
    build_metrics,
    get_metric_class,
)

PROTOCOLS = (SAME_IDENTITY, CROSS_IDENTITY)
#: Keys of a protocol batch passed on to the metrics as context (face metrics read them).
CONTEXT_KEYS = ("source", "source_landmarks", "driving_landmarks", "source_pose", "driving_pose",
                "source_expression", "driving_expression")
#: What each editing task does, written into the ``tasks`` note of the results' ``editing`` section.
EDITING_TASK_NOTES = {
    FRONTALISATION: "frames 0, {stride}, {stride2}, ... of each same-identity test video edited to the frontal pose "
                    "yaw = pitch = roll = 0 (fid's real set: the frames before editing)",
    EXPRESSION_TRANSFER: "the source frame of each cross-identity pair given the expression of driving frames 0, "
                         "{stride}, {stride2}, ..., keeping its own pose; compared with that driving frame",
}


def editing_metric_names(metric_names: Iterable[str], editing_tasks: Iterable[str]) -> list[str]:
    """The metrics among ``metric_names`` that score one of ``editing_tasks`` (empty: no editing protocol)."""
    tasks = set(editing_tasks)
    classes = {name: get_metric_class(name) for name in metric_names}
    return [name for name, cls in classes.items() if EDITING in cls.protocols and set(cls.editing_tasks) & tasks]


class ProtocolEvaluator(nn.Module):
    """Metrics and counts of the evaluation protocols; :meth:`reset` before each evaluation epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = nn.ModuleDict()
        self.counts = nn.ModuleDict()
        self.editing_tasks: tuple[str, ...] = ()
        self._unmeasurable: set[int] = set()

    def reset(self, metric_names: list[str], device: torch.device, editing_tasks: Iterable[str] = ()) -> None:
        """Fresh states for the two protocols, plus ``editing`` when ``editing_tasks`` is given and one of
        ``metric_names`` scores one of them."""
        metrics = {p: build_metrics(metric_names, p) for p in PROTOCOLS}
        counts = {p: {"videos": SumMetric(), "frames": SumMetric()} for p in PROTOCOLS}
        self.editing_tasks = tuple(editing_tasks)
        names = editing_metric_names(metric_names, self.editing_tasks) if self.editing_tasks else []
        if names:
            metrics[EDITING] = {k: v for k, v in build_metrics(metric_names, EDITING).items() if k in names}
            counts[EDITING] = {"videos": SumMetric(), "frames": SumMetric(),
                               **{task: SumMetric() for task in self.editing_tasks}}
        self.metrics = nn.ModuleDict({p: nn.ModuleDict(m) for p, m in metrics.items()}).to(device)
        self.counts = nn.ModuleDict({p: nn.ModuleDict(c) for p, c in counts.items()}).to(device)
        # A metric whose evaluator is missing (weights, package) is never updated: its result() gives the reason,
        # and one missing file must not abort the evaluation of every other metric.
        self._unmeasurable = {id(m) for group in metrics.values() for m in group.values()
                              if m.unavailable_reason() is not None}

    @property
    def edits(self) -> bool:
        """Whether this evaluation runs the editing protocol."""
        return EDITING in self.metrics

    def update_metrics(self, metrics: Iterable[Any], generated: torch.Tensor, target: torch.Tensor,
                       context: dict[str, Any]) -> None:
        """``update`` every measurable metric in ``metrics`` with ``[N, 3, H, W]`` pairs."""
        for metric in metrics:
            if id(metric) not in self._unmeasurable:
                metric.update(generated, target, **context)

    def update(self, protocol: str, batch: dict[str, Any], generated: torch.Tensor) -> None:
        """Score ``generated [B, T, 3, H, W]`` against the batch's driving frames under ``protocol``."""
        context = {k: batch[k] for k in CONTEXT_KEYS if k in batch}
        self.update_metrics(self.metrics[protocol].values(), generated.flatten(0, 1),
                            batch["driving"].flatten(0, 1), context)
        self.counts[protocol]["videos"].update(torch.tensor(float(generated.shape[0])))
        self.counts[protocol]["frames"].update(torch.tensor(float(generated.shape[0] * generated.shape[1])))

    def update_editing(self, batch: dict[str, Any], protocol: str, edit: Callable[..., torch.Tensor],
                       stride: int) -> None:
        """The editing protocol's share of one (non-padding) protocol batch: ``edit(source [N, 3, H, W], **edits)``
        is the model's ``edit_image`` (in chunks); only the metrics scoring the batch's task are updated."""
        task = {SAME_IDENTITY: FRONTALISATION, CROSS_IDENTITY: EXPRESSION_TRANSFER}.get(protocol)
        if task is None or task not in self.editing_tasks:
            return
        metrics = [m for m in self.metrics[EDITING].values() if task in m.editing_tasks]
        if not metrics:
            return
        driving = batch["driving"][:, ::max(1, stride)]  # [B, K, 3, H, W]
        videos, per_video = driving.shape[:2]
        references = driving.flatten(0, 1)
        if task == FRONTALISATION:
            sources = references
            frontal = torch.zeros(sources.shape[0], 3, device=sources.device, dtype=sources.dtype)
            edited, target = edit(sources, head_pose=frontal), sources
        else:
            source = batch["source"][:, 0]
            sources = source[:, None].expand(-1, per_video, *source.shape[1:]).flatten(0, 1)
            edited, target = edit(sources, expression_from=references), references
        # One "video" per edited image: context["source"][n] is the unedited image of output n (CSIM's layout).
        self.update_metrics(metrics, edited, target, {"source": sources[:, None]})
        counts = self.counts[EDITING]
        counts["videos"].update(torch.tensor(float(videos)))
        counts["frames"].update(torch.tensor(float(edited.shape[0])))
        counts[task].update(torch.tensor(float(edited.shape[0])))

    def collect(self, stride: int) -> dict[str, dict[str, Any]]:
        """The results' ``protocols`` sections (a collective under DDP: call it on every rank)."""
        sections = {}
        for protocol in self.counts:
            with warnings.catch_warnings():
                # A protocol this stage does not run (e.g. cross-identity in validation) has no update; it still
                # computes on every rank (a collective under DDP) and counts 0, which is what is wanted here.
                warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
                videos = int(self.counts[protocol]["videos"].compute().item())
            if videos == 0:
                continue
            sections[protocol] = {
                "videos": videos,
                "frames": int(self.counts[protocol]["frames"].compute().item()),
                "metrics": [m.result().to_dict() for m in self.metrics[protocol].values()],
            }
            if protocol == EDITING:
                stride = max(1, stride)
                sections[protocol]["tasks"] = {
                    task: {
                        "images": int(self.counts[EDITING][task].compute().item()),
                        "metrics": [name for name, m in self.metrics[EDITING].items() if task in m.editing_tasks],
                        "what": EDITING_TASK_NOTES[task].format(stride=stride, stride2=2 * stride),
                    }
                    for task in self.editing_tasks
                }
        return sections
