"""The prediction-task loss of a model with a fusion section, as the trainer calls it."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from modalign.data.dataset import SampleSet
from modalign.errors import DataError
from modalign.fusion.loss import fusion_loss
from modalign.model import MultimodalModel
from modalign.tasks import encode_targets
from modalign.types import Batch, EmbeddingBatch, LossOutput


def prediction_loss(
    model: MultimodalModel, aux_weight: float = 1.0
) -> Callable[[EmbeddingBatch, Batch], LossOutput]:
    """``loss(emb, batch)``: the task loss of ``model.fuse(emb)`` against ``batch.labels``."""
    spec = model.fusion_spec
    if spec is None:
        raise ValueError("prediction_loss needs a model with a fusion section")
    compat = bool(getattr(model.fusion, "reference_compat", False))

    def loss(emb: EmbeddingBatch, batch: Batch) -> LossOutput:
        pred = model.fuse(emb)
        targets = encode_targets(spec.tasks, batch.labels)
        return fusion_loss(
            spec.tasks,
            pred.fusion,
            pred.logits,
            pred.step_logits,
            targets,
            aux_logits=pred.aux_logits,
            present=emb.present,
            aux_weight=aux_weight,
            reference_compat=compat,
        )

    return loss


def check_labels(model: MultimodalModel, samples: SampleSet, split: str) -> None:
    """Encode every label of ``samples`` once so a bad one fails before training, naming the row.

    Raises:
        DataError: a label outside the task's classes (or a non-numeric regression label), with
            the manifest row number and column.
    """
    if model.fusion_spec is None or not len(samples):
        return
    labels: Mapping[str, Sequence[Any]] = samples.columns
    try:
        encode_targets(model.fusion_spec.tasks, labels)
    except DataError as e:
        row = samples.rows[e.row] if e.row is not None and e.row < len(samples.rows) else e.row
        raise DataError(f"{e.detail} (split {split!r})", reason=e.reason, row=row, column=e.column) from None
