"""Evaluation shared by every model: its config section (:mod:`.config`, the ``evaluation:`` section of a job), the
protocols' metrics (:mod:`.evaluator`), the validation/test step, logs and results payload (:mod:`.loop`), the
results files (:mod:`.results`: ``results.json`` / ``results.md``) and the validation sample grid
(:mod:`.samples`). :class:`reenact.models.base.ReenactmentModule` runs them from its validation and test hooks."""

from reenact.evaluation.config import VALIDATION_METRICS, EvaluationConfig
from reenact.evaluation.evaluator import CONTEXT_KEYS, PROTOCOLS, ProtocolEvaluator, editing_metric_names
from reenact.evaluation.results import format_value, results_markdown, results_table, write_results
from reenact.evaluation.samples import sample_grid, write_sample_grid

__all__ = ["CONTEXT_KEYS", "PROTOCOLS", "VALIDATION_METRICS", "EvaluationConfig", "ProtocolEvaluator",
           "editing_metric_names", "format_value", "results_markdown", "results_table", "sample_grid",
           "write_results", "write_sample_grid"]
