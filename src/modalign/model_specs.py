"""The parts a MultimodalModel is built from and returns: modality and fusion specs, predictions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from modalign.data.dataset import ModalitySource
from modalign.data.transforms import Transform
from modalign.errors import ConfigError
from modalign.fusion.base import FusionOutput
from modalign.tasks import TaskSpec


@dataclass(frozen=True)
class FusionSpec:
    """Fusion of the modality embeddings into task predictions.

    Attributes:
        name, params: the registered fusion module and its keyword arguments.
        tasks: the prediction tasks (classes resolved).
        head_hidden: hidden width of the task heads (None = linear heads).
        aux_heads: add a unimodal head per modality (M3CoL recipe).
        head_depth, head_dropout: hidden layers of every head and the dropout after the first.
        input: ``embedding`` (fuse the unit-norm embeddings) or ``features`` (the towers'
            unnormalised outputs, e.g. raw scaled features with the ``identity`` encoder).
        prediction: ``fused`` or ``ensemble`` (see :meth:`MultimodalModel.task_probabilities`).
    """

    name: str
    params: dict[str, Any]
    tasks: tuple[TaskSpec, ...]
    head_hidden: int | None = None
    aux_heads: bool = False
    head_depth: int = 1
    head_dropout: float = 0.0
    input: str = "embedding"
    prediction: str = "fused"

    def __post_init__(self) -> None:
        if self.input not in ("embedding", "features"):
            raise ConfigError(f"fusion.input must be embedding or features, got {self.input!r}")
        if self.prediction not in ("fused", "ensemble"):
            raise ConfigError(f"fusion.prediction must be fused or ensemble, got {self.prediction!r}")
        if self.prediction == "ensemble" and not self.aux_heads:
            raise ConfigError("fusion.prediction=ensemble averages the auxiliary heads: set aux_heads")

    def describe(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"tasks": [t.to_dict() for t in self.tasks]}

    @classmethod
    def from_description(cls, d: dict[str, Any]) -> FusionSpec:
        tasks = tuple(TaskSpec.from_dict(t) for t in d["tasks"])
        return cls(**{**d, "params": dict(d["params"]), "tasks": tasks})


@dataclass(frozen=True)
class Prediction:
    """Task outputs of one fused forward pass.

    Attributes:
        logits: task -> (B, C) logits of the fused representation.
        step_logits: task -> (S, B, C) logits of every fusion state (MultiModN), else None.
        aux_logits: modality -> task -> (B, C) unimodal head logits, or None.
        fusion: the fusion module's output.
    """

    logits: dict[str, torch.Tensor]
    step_logits: dict[str, torch.Tensor] | None
    aux_logits: dict[str, dict[str, torch.Tensor]] | None
    fusion: FusionOutput


@dataclass(frozen=True)
class ModalitySpec:
    """A named modality of a model: its kind, manifest column, encoder and fitted transform."""

    name: str
    kind: str
    column: str
    encoder: str
    encoder_kwargs: dict[str, Any]
    transform: Transform
    lora: dict[str, Any] | None = None  # LoRA adapters in the encoder (encoders/tuning.py add_lora)

    def source(self) -> ModalitySource:
        return ModalitySource(self.name, self.column, self.transform)
