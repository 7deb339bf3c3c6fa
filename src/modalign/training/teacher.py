"""Frozen teacher embeddings for distillation objectives (``affinity_distillation``).

The teacher is a saved modalign model with (some of) the student's modality names. Its embeddings
of every training/validation sample are computed once, with the teacher's own transforms, and
carried through batches as extra inputs ``{name}.teacher``; the trainer adds them to the
:class:`~modalign.types.EmbeddingBatch` the objectives see. Computing them once keeps the teacher
out of the training step (it is frozen and its inputs are not augmented). With
``model.teacher_on_augmented`` the trainer runs the teacher on every augmented training batch
instead (:class:`~modalign.training.trainer.Trainer` ``teacher=``), which needs the same inputs
(:func:`check_same_inputs`). :func:`inherit_from_teacher` initialises a student from the teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from modalign.data.dataset import ModalitySource, SampleSet
from modalign.data.manifest import Manifest
from modalign.data.transforms.base import Transform
from modalign.errors import ConfigError
from modalign.model import MultimodalModel
from modalign.training.inherit import inherit_weights

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


def check_same_inputs(student: MultimodalModel, teacher: MultimodalModel, why: str) -> None:
    """Refuse a teacher whose transforms differ from the student's for a shared modality.

    Augmentation settings (``random_shift``) may differ; a text tokenizer must be the same.

    Raises:
        ConfigError: naming the modality and ``why`` the inputs must match.
    """
    for name, spec in student.specs.items():
        if name not in teacher.specs:
            continue
        ours, theirs = spec.transform, teacher.specs[name].transform
        a = {k: v for k, v in ours.settings().items() if k != "random_shift"}
        b = {k: v for k, v in theirs.settings().items() if k != "random_shift"}
        same = type(ours) is type(theirs) and a == b
        if same and hasattr(ours, "tokenizer") and hasattr(theirs, "tokenizer"):
            same = ours.tokenizer.to_str() == theirs.tokenizer.to_str()
        if not same:
            raise ConfigError(
                f"modality {name!r}: {why}, but the student's transform differs from the teacher's "
                f"({type(ours).__name__} {a} vs {type(theirs).__name__} {b}, or another tokenizer); "
                f"use the teacher's transform settings for {name}"
            )


def inherit_from_teacher(
    student: MultimodalModel, teacher: MultimodalModel, every_k: int, layers: Sequence[int] | None
) -> list[str]:
    """TinyCLIP weight inheritance (:mod:`modalign.training.inherit`) of the shared modalities'
    towers; returns the student parameters left at their random initialisation."""
    check_same_inputs(student, teacher, "weight inheritance maps the teacher's token and input weights")
    state = teacher.state_dict()
    return inherit_weights(student, state, every_k, layers)
