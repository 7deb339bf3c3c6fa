"""Learning-rate schedule: linear warm-up then cosine decay to ``min_lr_ratio * lr``."""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, warmup_steps: int, max_steps: int, min_lr_ratio: float = 0.0) -> float:
    """The learning rate of 0-based ``step``: ``lr·(step+1)/warmup`` while warming up, then cosine."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    span = max(1, max_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    floor = lr * min_lr_ratio
    return floor + (lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
