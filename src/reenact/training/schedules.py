"""Learning-rate schedules shared by the models' ``configure_optimizers`` (picklable callables for ``LambdaLR``, so
that a checkpoint's scheduler state restores)."""

from __future__ import annotations


class WarmupExponentialDecay:
    """Learning-rate factor of the released trainer at FSRT iteration ``it = step + offset``: ``it / warmup``
    during the warm-up, then ``decay_rate ** ((it - warmup) / decay_steps)``. ``offset`` lets a scheduler that
    starts stepping late (the discriminator's, in phase III) follow the same global curve. A class, not a
    lambda, so ``LambdaLR`` checkpoints it."""

    def __init__(self, warmup_steps: int, decay_rate: float, decay_steps: int, offset: int = 0):
        self.warmup_steps = int(warmup_steps)
        self.decay_rate = float(decay_rate)
        self.decay_steps = int(decay_steps)
        self.offset = int(offset)

    def __call__(self, step: int) -> float:
        step = step + self.offset
        if step < self.warmup_steps:
            return step / self.warmup_steps
        return self.decay_rate ** ((step - self.warmup_steps) / self.decay_steps)


__all__ = ["WarmupExponentialDecay"]
