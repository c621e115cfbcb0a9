"""``reenact benchmark``: the side-by-side comparison of models under one trainer, one dataset and one metrics
suite (:mod:`~reenact.comparison.plan`, :mod:`~reenact.comparison.runner`, :mod:`~reenact.comparison.report`)."""

from reenact.comparison.command import run_benchmark
from reenact.comparison.plan import Budget, Stage, plan

__all__ = ["Budget", "Stage", "plan", "run_benchmark"]
