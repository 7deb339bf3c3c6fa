"""Frozen teacher embeddings for distillation objectives (``affinity_distillation``).

The teacher is a saved modalign model with (some of) the student's modality names. Its embeddings
of every training/validation sample are computed once, with the teacher's own transforms, and
carried through batches as extra inputs ``{name}.teacher``; the trainer adds them to the
:class:`~modalign.types.EmbeddingBatch` the objectives see. Computing them once keeps the teacher
out of the training step (it is frozen and its inputs are not augmented).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modalign.data.dataset import ModalitySource, SampleSet
from modalign.data.manifest import Manifest
from modalign.data.transforms.base import Transform
from modalign.model import MultimodalModel

SUFFIX = ".teacher"


class PrecomputedTransform(Transform):
    """Collates precomputed (D,) vectors; never reads a manifest cell."""

    kind = "precomputed"

    def __init__(self, dim: int):
        self.dim = dim

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor:
        raise TypeError("precomputed embeddings are not loaded from a manifest")

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.dim)


def add_teacher_embeddings(
    samples: SampleSet, manifest: Manifest, teacher: MultimodalModel, batch_size: int = 256
) -> list[ModalitySource]:
    """Embed every sample with the teacher; returns the sources that collate the new entries.

    Modalities of the teacher that the samples lack are skipped; a sample whose modality is absent
    (for the student) gets no teacher embedding either.
    """
    sources = []
    for name, spec in teacher.specs.items():
        if name not in samples.data:
            continue
        keep = [i for i, x in enumerate(samples.data[name]) if x is not None]
        payloads = [spec.source().payload(manifest.rows[samples.rows[i]]) for i in keep]
        emb = teacher.encode(payloads, modality=name, batch_size=batch_size, base_dir=manifest.base_dir)
        column: list[torch.Tensor | None] = [None] * len(samples)
        for i, e in zip(keep, emb):
            column[i] = torch.from_numpy(e)
        samples.data[name + SUFFIX] = column
        sources.append(ModalitySource(name + SUFFIX, name + SUFFIX, PrecomputedTransform(teacher.embed_dim)))
    return sources
