"""What a training run prints: a progress bar that counts steps, and a parameter summary without empty columns."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar


class StepProgressBar(RichProgressBar):
    """Rich progress bar whose title counts steps when training is bounded by steps, not epochs.

    Lightning writes ``Epoch {e}/{max_epochs - 1}``, which reads ``Epoch 0/-2`` under ``max_steps`` (every
    reenact preset) because ``max_epochs`` is then ``-1``.
    """

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs >= 0:
            return super()._get_train_description(current_epoch)
        description = f"Epoch {current_epoch}"
        if trainer.max_steps and trainer.max_steps > 0:
            description += f" (max_steps {trainer.max_steps})"
        width = len(self.validation_description)
        return f"{description:{width}}" if width > len(description) else description


class ParameterSummary(RichModelSummary):
    """Lightning's rich model summary without the FLOPs column and total.

    Lightning counts FLOPs only with an ``example_input_array``; reenact's models take dicts of clips, so the
    column would show zeros. Per-frame MACs are measured in ``benchmarks/complexity.py`` instead.
    """

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        for name, _ in columns:  # the first is Lightning's unnamed index column
            table.add_column(name, justify="right" if name.startswith("Params") else "left",
                             style="dim" if not name.strip() else None)
        for row in zip(*(values for _, values in columns), strict=True):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        console.print(f"trainable params: {get_human_readable_count(int(trainable_parameters))} · total params: "
                      f"{get_human_readable_count(int(total_parameters))} · size: "
                      f"{get_formatted_model_size(model_size)} MB")
