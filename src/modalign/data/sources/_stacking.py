"""One-sample sets handed from DataLoader workers with each modality's tensors in one block.

A DataLoader worker hands every tensor over through its own shared-memory segment; one tensor per
modality and chunk of samples instead of one per sample is what makes worker reading fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from modalign.data.dataset import SampleSet


@dataclass
class _Row:
    block: torch.Tensor
    index: int


def stack_rows(parts: Sequence[SampleSet]) -> None:
    """Stack each modality's tensors of the one-sample sets ``parts`` into one block, in place
    (each sample keeps a reference to its row); :func:`unstack_rows` gives the tensors back."""
    names = {k for p in parts for k in p.data}
    for name in names:
        rows = [p.data[name][0] for p in parts if len(p) and name in p.data]
        tensors = [t for t in rows if t is not None]
        if (
            not tensors
            or not all(isinstance(t, torch.Tensor) for t in tensors)  # a processor's dict of tensors
            or any(t.shape != tensors[0].shape for t in tensors)
        ):
            continue  # variable shapes and dict inputs travel one by one
        block = torch.stack(tensors)
        k = 0
        for p in parts:
            values = p.data.get(name) if len(p) else None
            if values and values[0] is not None:
                values[0] = _Row(block, k)  # type: ignore[call-overload]
                k += 1


def unstack_rows(parts: Sequence[SampleSet]) -> None:
    """Undo :func:`stack_rows` in place: every sample's tensor is a view of its row of the block."""
    for p in parts:
        for values in p.data.values():
            if values and isinstance(values[0], _Row):
                values[0] = values[0].block[values[0].index]
