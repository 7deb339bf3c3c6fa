"""Per-sample augmentation: each row's randomness is a function of (seed, epoch, sample index).

A batch-level ``Transform.augment`` draws from the global RNG in batch order, so a row's
augmentation would depend on which rows share its batch, and thus on the number of processes or
workers that split the batch. Here every row is augmented alone under its own seed, so the same
sample in the same epoch gets the same augmentation whichever rank or worker processes it. The
global RNG is left untouched (dropout and mixup streams do not depend on augmentation).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modalign.data.transforms.base import Transform

_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant: consecutive indices give far-apart seeds


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of training sample ``index`` in ``epoch`` of a run seeded ``seed``."""
    return ((seed * 1_000_003 + epoch) * _MIX + index * 0xBF58476D1CE4E5B9) % (1 << 63)


def augment_per_sample(transform: Transform, x: torch.Tensor, seeds: Sequence[int]) -> torch.Tensor:
    """``transform.augment`` of every row of ``x`` (B, ...) alone, under ``seeds[i]`` (length B)."""
    if type(transform).augment is Transform.augment or x.shape[0] == 0:
        return x  # no augmentation: skip the per-row loop
    if len(seeds) != x.shape[0]:
        raise ValueError(f"augment_per_sample: {len(seeds)} seeds for {x.shape[0]} rows")
    gen = torch.random.default_generator
    saved = gen.get_state()
    try:
        rows = []
        for i, s in enumerate(seeds):
            gen.manual_seed(s)
            rows.append(transform.augment(x[i : i + 1]))
        return torch.cat(rows)
    finally:
        gen.set_state(saved)
