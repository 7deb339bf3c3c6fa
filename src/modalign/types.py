"""Core data types passed between data, model, objectives and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch


@dataclass(frozen=True)
class Batch:
    """A collated batch keyed by modality *name*.

    Attributes:
        inputs: ``inputs[name]`` tensor with leading dim B; absent rows hold a placeholder. Besides
            the modalities it may hold precomputed inputs under their own names, e.g. frozen
            teacher embeddings ``"{name}.teacher"`` for distillation.
        present: ``present[name]`` bool tensor (B,); False means the modality is absent. Same
            keys as ``inputs``.
        ids: sample ids, length B.
        labels: optional label columns, each a list of length B (None where missing).

    Nothing else travels with a batch: masks an encoder needs are derived from its input (the text
    encoder's padding mask from token id 0, the time-series encoders' from NaN padding).
    """

    inputs: dict[str, torch.Tensor]
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
        tensors = [*self.inputs.values(), *self.present.values()]
        if all(t.device == device for t in tensors):
            return self
        return replace(
            self,
            inputs={k: v.to(device) for k, v in self.inputs.items()},
            present={k: v.to(device) for k, v in self.present.items()},
        )

    def split(self, size: int) -> list[Batch]:
        """Consecutive micro-batches of at most ``size`` rows (views of the tensors)."""
        return [
            Batch(
                inputs={k: v[i : i + size] for k, v in self.inputs.items()},
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
