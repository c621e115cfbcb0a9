"""Seconds per training step, measured inside ``fit``: how ``reenact benchmark`` turns a time budget into steps.

Start-up (imports, data checks, the first batch's allocations) is excluded: the clock starts when the first
training batch ends and stops at the last, so ``seconds / (steps - 1)`` is the steady-state cost of a step.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback

#: When set, ``fit`` writes ``{"batches", "steps", "seconds"}`` to this file at the end of training.
STEP_TIMES_ENV = "REENACT_STEP_TIMES"


class StepTimer(Callback):
    """Times the training batches after the first; writes the result to ``path`` (rank 0) when training ends."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.first: float | None = None
        self.last: float | None = None
        self.first_step = 0
        self.batches = 0

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first, self.first_step = now, trainer.global_step
        else:
            self.batches += 1
        self.last = now

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.is_global_zero or self.first is None or self.last is None:
            return
        payload = {"batches": self.batches, "steps": trainer.global_step - self.first_step,
                   "seconds": round(self.last - self.first, 4)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(json.dumps(payload) + "\n")
        os.replace(temporary, self.path)
