"""``EvaluationConfig``: how a model is evaluated, one config section (``evaluation:``) shared by every model.

What is measured and how the frames are generated for it belongs to the job, not to the model's weights, so it is
not a constructor argument of any model: ``reenact fit|validate|test`` read it from their own ``evaluation:``
section (``--evaluation.metrics``, ``--evaluation.relative``, ...; saved with the run's ``config.yaml``),
:func:`reenact.models.create_model` takes it as ``evaluation={...}`` (or a preset's ``evaluation:`` section), and
code calls :meth:`reenact.models.base.ReenactmentModule.configure_evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass

from reenact.metrics import QUICK_METRICS, list_metrics
from reenact.nn.config import FrozenConfig

#: Validation's default: the pixel metrics, which need no face backend and cost little at every validation.
VALIDATION_METRICS = ("l1", "psnr", "ms_ssim")


@dataclass(frozen=True)
class EvaluationConfig(FrozenConfig):
    """The evaluation of a model (the protocols of :mod:`reenact.data.protocols`).

    Args:
        metrics: metric names of ``test`` (see ``reenact.metrics.list_metrics``); the default is
            ``reenact.metrics.QUICK_METRICS`` (pixel + dlib face metrics); ``reenact.metrics.DEFAULT_METRICS`` is
            the papers' full set with FID and FVD.
        validation_metrics: metric names of validation (during ``fit`` and in ``validate``): cheap ones by
            default (:data:`VALIDATION_METRICS`), so validating often stays cheap while ``test`` measures
            everything.
        relative: generate with relative motion transfer (FOMM) instead of absolute.
        chunk: driving frames generated per ``animate`` call; bounds memory on long videos. Models with temporal
            state across frames (``stateful_animation``) get the whole video at once.
        sample_frames: frames shown in the PNG sample grid written at each validation.
    """

    metrics: tuple[str, ...] = tuple(QUICK_METRICS)
    validation_metrics: tuple[str, ...] = VALIDATION_METRICS
    relative: bool = False
    chunk: int = 16
    sample_frames: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        known = set(list_metrics())
        for field in ("metrics", "validation_metrics"):
            unknown = sorted(set(getattr(self, field)) - known)
            if unknown:
                raise ValueError(f"evaluation.{field}: unknown metrics {unknown}; "
                                 f"registered: {', '.join(sorted(known))}")
        if self.chunk < 1:
            raise ValueError(f"evaluation.chunk must be at least 1, got {self.chunk}")
        if self.sample_frames < 1:
            raise ValueError(f"evaluation.sample_frames must be at least 1, got {self.sample_frames}")


#: Constructor arguments the models took before the ``evaluation`` section existed (found in old checkpoints'
#: hyper-parameters; dropped when they load).
LEGACY_ARGUMENTS = ("metrics", "relative", "eval_chunk", "num_sample_frames")

__all__ = ["LEGACY_ARGUMENTS", "VALIDATION_METRICS", "EvaluationConfig"]
