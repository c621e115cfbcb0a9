"""``ReenactmentModule``: the contract every model implements, and the hooks that run the evaluation every model
shares (the metric loop, results files and sample grid live in :mod:`reenact.evaluation`).

A model implements ``animate`` (generation) and, if it learns, ``training_step`` and
``configure_optimizers``. Validation and test are implemented once here: they run the evaluation
protocols of :mod:`reenact.data.protocols` (same-identity reconstruction, cross-identity reenactment)
through ``animate`` and the metrics of :mod:`reenact.metrics`, so every model is measured by the same
code. Test runs write ``results.json`` and ``results.md`` into the run's log directory.

Models that can edit a still image (``supports_editing``, ``edit_image``) are also scored, in test only, on the
``editing`` protocol of PECHead Table 3 (Sec. 4.3, supplement Sec. 2.4). It needs no data of its own; its inputs
are taken from the two protocols' batches (every ``editing_frame_stride``-th driving frame, 0 included):

* **frontalisation** -- each selected frame of a same-identity test video is edited to the frontal head pose
  ``yaw = pitch = roll = 0``; scored by ``are`` (pose error against 0) and ``fid`` (real set: the frames
  before editing);
* **expression transfer** -- the source frame of each cross-identity pair gets the expression of each selected
  driving frame, keeping its own pose; scored by ``auh`` (AUs of the result vs the driving frame).

Metrics are routed by ``ReenactMetric.editing_tasks``: ARE/FID see only frontalisations, AUH only transfers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar, Self

import lightning as L
import torch
from torch import nn

import reenact
from reenact.data.datasets import SamplingSpec
from reenact.evaluation import ProtocolEvaluator, editing_metric_names
from reenact.evaluation.config import LEGACY_ARGUMENTS, EvaluationConfig
from reenact.evaluation.loop import evaluation_step, finish_test, log_validation, write_validation_samples
from reenact.metrics import EDITING_TASKS
from reenact.nn.config import ArchitectureConfig


class ReenactmentModule(L.LightningModule):
    """Base class of every reenact model.

    Args:
        image_size: side of the square frames the model works at, in pixels.

    How it is evaluated (metrics of test and of validation, relative or absolute motion, chunking, sample grid) is
    not a constructor argument: it is the job's ``evaluation:`` section (:class:`reenact.evaluation.EvaluationConfig`),
    set with :meth:`configure_evaluation` (``reenact fit|validate|test`` and ``create_model(evaluation=...)`` do).
    """

    #: Short registry name; stored in checkpoints so ``load_from_checkpoint`` can rebuild the model.
    registry_name: ClassVar[str] = ""
    #: The architecture config of the pure-torch generator (:mod:`reenact.nn.config`), taken as the ``generator``
    #: argument; ``None`` for models without one.
    generator_config: ClassVar[type[ArchitectureConfig] | None] = None
    #: How the shared DataModule samples training examples for this model.
    train_sampling: ClassVar[SamplingSpec] = SamplingSpec(mode="pair", num_source=1, num_driving=1)
    #: The values of the model's ``variant`` argument (a paper's ablation settings, e.g. PECHead's Table 4);
    #: ``reenact benchmark --models NAME:VARIANT`` trains and compares them. Empty: no variants.
    variants: ClassVar[tuple[str, ...]] = ()
    #: False for reference models with nothing to learn; ``reenact fit`` refuses them.
    trainable: ClassVar[bool] = True
    #: True when ``animate`` carries state from frame to frame and must see whole videos.
    stateful_animation: ClassVar[bool] = False
    #: True when ``edit_image`` is implemented: the test then also runs the ``editing`` protocol (module docstring).
    supports_editing: ClassVar[bool] = False
    #: The editing tasks ``edit_image`` can do (when ``supports_editing``): ``FRONTALISATION`` needs absolute
    #: ``head_pose``, ``EXPRESSION_TRANSFER`` needs ``expression_from``.
    editing_tasks: ClassVar[tuple[str, ...]] = EDITING_TASKS
    #: Editing protocol: frames 0, s, 2s, ... of each test video are edited (bounds its cost; s = 4).
    editing_frame_stride: ClassVar[int] = 4

    def generator_config_from_hparams(self) -> ArchitectureConfig:
        """The ``generator`` argument saved by ``save_hyperparameters`` (a config or a mapping of its fields) as a
        :attr:`generator_config`; the hyper-parameters keep it as a plain mapping, so checkpoints load with
        ``weights_only=True`` and saved config files stay plain YAML."""
        if self.generator_config is None:
            raise TypeError(f"{type(self).__name__} has no generator config")
        config = self.generator_config.coerce(self.hparams.get("generator"))
        self.hparams["generator"] = asdict(config)
        return config

    @classmethod
    def upgrade_hyper_parameters(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint's stored constructor arguments in this version's form: architecture fields stored flat
        by older versions move into the ``generator`` section (:meth:`ArchitectureConfig.gather`), and the
        evaluation arguments older versions took (``metrics``, ``relative``, ...) are dropped: evaluation is the
        job's ``evaluation:`` section now."""
        hparams = {key: value for key, value in hparams.items() if key not in LEGACY_ARGUMENTS}
        return hparams if cls.generator_config is None else cls.generator_config.gather(hparams)

    def __init__(self, image_size: int = 64) -> None:
        super().__init__()
        self.image_size = image_size
        self.evaluation = EvaluationConfig()
        self.evaluator = ProtocolEvaluator()  # the protocols' metrics (reenact.evaluation)

    def configure_evaluation(self, config: EvaluationConfig | Mapping[str, Any] | None = None,
                             **overrides: Any) -> Self:
        """Set how validation and test evaluate this model (:class:`EvaluationConfig`; a mapping of its fields, e.g.
        a config file's ``evaluation:`` section, or single fields as keywords). Returns the model."""
        self.evaluation = EvaluationConfig.resolve(config, **overrides)
        return self

    # ----------------------------------------------------------------------------------------- contract
    def animate(self, source: torch.Tensor, driving: torch.Tensor, *, relative: bool = False) -> torch.Tensor:
        """Generate the source identity moving like the driving frames.

        Args:
            source: ``[B, S, 3, H, W]`` in [0, 1], S >= 1 source frames.
            driving: ``[B, T, 3, H, W]`` in [0, 1].
            relative: transfer motion relative to the first driving frame (FOMM) instead of absolute.

        Returns:
            ``[B, T, 3, H, W]`` in [0, 1].
        """
        raise NotImplementedError

    def edit_image(self, source: torch.Tensor, *, head_pose: torch.Tensor | None = None,
                   expression_from: torch.Tensor | None = None) -> torch.Tensor:
        """Edit still images: set the head pose and/or take the expression of other images.

        Args:
            source: ``[B, 3, H, W]`` in [0, 1].
            head_pose: ``[B, 3]`` absolute (yaw, pitch, roll) in degrees; frontalisation is all zeros. ``None``
                keeps the source's pose.
            expression_from: ``[B, 3, H, W]`` images whose expressions are transferred; ``None`` keeps the
                source's expression.

        Returns:
            ``[B, 3, H, W]`` in [0, 1]. Only models with ``supports_editing`` implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot edit images (supports_editing is False)")

    # ------------------------------------------------------------------------------- training-only networks
    def defer_perceptual_loss(self, factory: Callable[[], nn.Module] | None) -> None:
        """Register how to build the perceptual loss; it is built when training starts (:meth:`setup`).

        The VGG19 perceptual loss needs the real ImageNet weights file. Building it in ``__init__`` would make
        inference, parameter counting and checkpoint loading need a file only training uses; its frozen
        backbone is not in ``state_dict()``, so building it late changes no checkpoint. ``self.perceptual`` is
        ``None`` until then.
        """
        self.perceptual: nn.Module | None = None
        self._perceptual_factory = factory

    def build_training_networks(self) -> None:
        """Build what :meth:`defer_perceptual_loss` registered (raises ``MissingWeightsError`` when the VGG19
        file is absent: before the first step, naming the file and where to put it)."""
        factory = getattr(self, "_perceptual_factory", None)
        if factory is not None and getattr(self, "perceptual", None) is None:
            self.perceptual = factory().to(self.device)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.build_training_networks()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["reenact"] = {"model": self.registry_name, "version": reenact.__version__}

    # ------------------------------------------------------------------------------------ evaluation
    def editing_metric_names(self) -> list[str]:
        """The selected metrics that score an editing task this model can do (empty: no editing protocol)."""
        return editing_metric_names(self.evaluation.metrics, self.editing_tasks) if self.supports_editing else []

    def _reset_evaluation(self, test: bool = False) -> None:
        """Fresh metric states for the two protocols (test's metrics in test, validation's otherwise), plus the
        ``editing`` protocol in test when the model can edit and an editing metric is selected."""
        tasks = self.editing_tasks if test and self.supports_editing else ()
        names = self.evaluation.metrics if test else self.evaluation.validation_metrics
        self.evaluator.reset(list(names), self.device, tasks)

    @torch.no_grad()
    def generate_video(self, source: torch.Tensor, driving: torch.Tensor, relative: bool, chunk: int | None = None,
                       on_frames: Callable[[int], None] | None = None) -> torch.Tensor:
        """``animate`` over a whole video in chunks of ``chunk`` (default ``evaluation.chunk``) frames, bounding
        memory.

        Stateful models (``stateful_animation``) get the whole video in one call. In relative mode every chunk
        is animated with the video's first driving frame prepended, so all chunks share one reference frame.
        ``on_frames(n)`` is called after each chunk with its frame count (progress display).

        Shapes: ``source [B, S, 3, H, W]``, ``driving [B, T, 3, H, W]`` -> ``[B, T, 3, H, W]``.
        """
        chunk = chunk or self.evaluation.chunk
        if self.stateful_animation or driving.shape[1] <= chunk:
            chunk = driving.shape[1]
        outputs = []
        first = driving[:, :1]
        for start in range(0, driving.shape[1], chunk):
            part = driving[:, start:start + chunk]
            if relative and start > 0:
                outputs.append(self.animate(source, torch.cat([first, part], 1), relative=True)[:, 1:])
            else:
                outputs.append(self.animate(source, part, relative=relative))
            if on_frames is not None:
                on_frames(part.shape[1])
        return torch.cat(outputs, 1)

    def _evaluation_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """One protocol batch generated and scored (:func:`reenact.evaluation.loop.evaluation_step`); models that
        need more of the batch than its frames override it."""
        return evaluation_step(self, batch)

    def on_validation_epoch_start(self) -> None:
        self._reset_evaluation()

    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        if self.trainer.sanity_checking:
            # The sanity check proves that the model runs on the validation data before training starts;
            # scoring its frames would cost metric time for numbers nobody reads.
            self.generate_video(batch["source"], batch["driving"], self.evaluation.relative)
            return
        generated = self._evaluation_step(batch, batch_idx)
        if batch_idx == 0 and dataloader_idx == 0:
            write_validation_samples(self, batch, generated)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            log_validation(self)

    def on_test_epoch_start(self) -> None:
        self._reset_evaluation(test=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        self._evaluation_step(batch, batch_idx)

    def on_test_epoch_end(self) -> None:
        finish_test(self)
