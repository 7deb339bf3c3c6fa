"""Core data types passed between data, model, objectives and evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch

# A modality's batch input: one (B, ...) tensor, or a dict of them sharing the leading dim B (e.g. a
# pretrained text model's ``input_ids`` and ``attention_mask``, both (B, T)).
Inputs = torch.Tensor | dict[str, torch.Tensor]
# Key of an input dict holding a frozen encoder's cached (B, F) outputs: the tower skips its encoder.
ENCODER_FEATURES = "encoder_features"


def take_rows(x: Inputs, idx: torch.Tensor | slice) -> Inputs:
    """Rows ``idx`` of a tensor, or of every tensor of a dict input (same keys)."""
    if isinstance(x, Mapping):
        return {k: v[idx] for k, v in x.items()}
    return x[idx]


def inputs_to(x: Inputs, device: torch.device) -> Inputs:
    """A tensor or dict input moved to ``device``."""
    if isinstance(x, Mapping):
        return {k: v.to(device) for k, v in x.items()}
    return x.to(device)


def input_tensors(x: Inputs) -> list[torch.Tensor]:
    """The tensors of a tensor or dict input."""
    return list(x.values()) if isinstance(x, Mapping) else [x]


@dataclass(frozen=True)
class Batch:
    """A collated batch keyed by modality *name*.

    Attributes:
        inputs: ``inputs[name]`` a tensor with leading dim B, or a dict of such tensors (all with
            the same B; e.g. ``{"input_ids": (B, T), "attention_mask": (B, T)}`` of a pretrained
            text model, or ``{ENCODER_FEATURES: (B, F)}`` from the frozen-feature cache); absent
            rows hold a placeholder. Besides
            the modalities it may hold precomputed inputs under their own names, e.g. frozen
            teacher embeddings ``"{name}.teacher"`` for distillation.
        present: ``present[name]`` bool tensor (B,); False means the modality is absent. Same
            keys as ``inputs``.
        ids: sample ids, length B.
        labels: optional label columns, each a list of length B (None where missing).

    ``present`` is never inside an input dict: it stays the one mask of absent rows. Masks an
    encoder needs travel in its input dict (``attention_mask``); the older from-scratch encoders
    still derive theirs from the input (the text encoder's from token id 0, the time-series
    encoders' from NaN padding). Use :func:`take_rows` / :func:`inputs_to` to handle both forms.
    """

    inputs: dict[str, Inputs]
    present: dict[str, torch.Tensor]
    ids: list[str]
    labels: dict[str, list] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with ``inputs`` and ``present`` on ``device`` (ids and labels are lists).

        Returns ``self`` when every tensor is already there; nothing is modified in place.
        """
        device = torch.device(device)
        tensors = [t for v in self.inputs.values() for t in input_tensors(v)] + [*self.present.values()]
        if all(t.device == device for t in tensors):
            return self
        return replace(
            self,
            inputs={k: inputs_to(v, device) for k, v in self.inputs.items()},
            present={k: v.to(device) for k, v in self.present.items()},
        )

    def split(self, size: int) -> list[Batch]:
        """Consecutive micro-batches of at most ``size`` rows (views of the tensors)."""
        return [
            Batch(
                inputs={k: take_rows(v, slice(i, i + size)) for k, v in self.inputs.items()},
                present={k: v[i : i + size] for k, v in self.present.items()},
                ids=self.ids[i : i + size],
                labels={k: v[i : i + size] for k, v in self.labels.items()},
            )
            for i in range(0, len(self.ids), size)
        ]


@dataclass(frozen=True)
class EmbeddingBatch:
    """Unit-norm embeddings per modality name.

    Attributes:
        emb: ``emb[name]`` (B, D), L2-normalised rows; absent rows are zeros and must be ignored.
        present: ``present[name]`` bool (B,).
        features: ``features[name]`` (B, D), the same rows before L2 normalisation (zeros where
            absent), when the model computed them; fusion with ``input="features"`` uses them.
    """

    emb: dict[str, torch.Tensor]
    present: dict[str, torch.Tensor]
    features: dict[str, torch.Tensor] | None = None


@dataclass(frozen=True)
class LossOutput:
    """A scalar loss and the float metrics to log with it."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)
