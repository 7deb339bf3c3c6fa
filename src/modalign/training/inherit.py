"""TinyCLIP-style weight inheritance: initialise a small student from a trained teacher.

Wu et al., "TinyCLIP: CLIP Distillation via Affinity Mimicking and Weight Inheritance"
(arXiv:2309.12314), Sec. 3.2 "manual inheritance": the student keeps a subset of the teacher's
layers and, inside each kept layer, a subset of its channels. Here, for our own architectures:

* layers: student layer ``i`` of every ``...layers.{i}.`` / ``...layer.{i}.`` / ``...blocks.{i}.``
  list takes teacher layer ``layers[i]`` (explicit), else ``i * every_k`` (every k-th layer);
* widths: every tensor takes the *leading* slice of the teacher's along each dimension (the
  student's shape must be no larger); a stacked q/k/v projection (``in_proj_weight``/``bias``,
  ``3W`` rows) is sliced per q, k and v.

Parameters without a teacher counterpart (another name, more dimensions, a larger shape) keep
their random initialisation and are reported. Token embeddings are only meaningful when student
and teacher share the tokenizer (the workflow checks that).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from modalign.errors import ConfigError

_LAYER = re.compile(r"\.(layers?|blocks)\.(\d+)\.")


def teacher_name(name: str, every_k: int, layers: Sequence[int] | None) -> str:
    """The teacher parameter a student parameter inherits from (layer indices mapped)."""

    def remap(m: re.Match[str]) -> str:
        i = int(m.group(2))
        if layers is not None:
            if i >= len(layers):
                raise ConfigError(f"model.inherit.layers has {len(layers)} entries; the student needs more")
            j = layers[i]
        else:
            j = i * every_k
        return f".{m.group(1)}.{j}."

    return _LAYER.sub(remap, name)


def leading_slice(teacher: torch.Tensor, shape: torch.Size, name: str) -> torch.Tensor | None:
    """The teacher tensor cut to ``shape`` (leading indices); None when it cannot be."""
    if teacher.ndim != len(shape) or any(s > t for s, t in zip(shape, teacher.shape)):
        return None
    if name.endswith(("in_proj_weight", "in_proj_bias")) and shape[0] % 3 == 0 and teacher.shape[0] % 3 == 0:
        parts = teacher.chunk(3, dim=0)  # q, k, v stacked
        return torch.cat([p[tuple(slice(0, s) for s in (shape[0] // 3, *shape[1:]))] for p in parts])
    return teacher[tuple(slice(0, s) for s in shape)]


@torch.no_grad()
def inherit_weights(
    student: nn.Module,
    teacher_state: Mapping[str, torch.Tensor],
    every_k: int = 1,
    layers: Sequence[int] | None = None,
) -> list[str]:
    """Copy the teacher's (sliced) weights into ``student`` in place; returns the names left random."""
    if every_k < 1:
        raise ConfigError(f"model.inherit.every_k_layers must be >= 1, got {every_k}")
    left = []
    for name, p in student.state_dict().items():
        src = teacher_state.get(teacher_name(name, every_k, layers))
        cut = None if src is None else leading_slice(src, p.shape, name)
        if cut is None:
            left.append(name)
            continue
        p.copy_(cut.to(p.dtype))
    return left
