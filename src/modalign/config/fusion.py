"""The ``fusion`` section: fusion of the modality embeddings and its prediction tasks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from modalign.config._base import _Frozen


class TaskConfig(_Frozen):
    """A prediction task on the fused representation."""

    name: str = Field(..., description="task name (key of metrics and predictions)")
    kind: Literal["multiclass", "multilabel", "regression"] = Field("multiclass", description="output type")
    column: str | None = Field(None, description="label column; defaults to the task name")
    classes: tuple[Any, ...] | None = Field(
        None, description="class values in output order; null = the training split's labels, sorted"
    )
    weight: float = Field(1.0, ge=0, description="loss weight")

    @property
    def label_column(self) -> str:
        return self.column if self.column is not None else self.name


class FusionConfig(_Frozen):
    """Fusion of the modality embeddings into task predictions (robust to missing modalities)."""

    name: str = Field("concat", description="registered fusion: concat, attention, multimodn, lego")
    params: dict[str, Any] = Field(default_factory=dict, description="fusion keyword arguments")
    tasks: tuple[TaskConfig, ...] = Field(..., min_length=1, description="prediction tasks (label columns)")
    input: Literal["embedding", "features"] = Field(
        "embedding",
        description="what is fused: the unit-norm embeddings, or the towers' unnormalised features",
    )
    head_hidden: int | None = Field(None, gt=0, description="hidden width of task heads; null = linear")
    head_depth: int = Field(
        1,
        ge=1,
        description="hidden layers per task head (2 = M3CoL's Linear-ReLU-Dropout-Linear-ReLU-Linear)",
    )
    head_dropout: float = Field(0.0, ge=0, lt=1, description="dropout after the first hidden layer of heads")
    aux_heads: bool = Field(False, description="unimodal auxiliary heads (M3CoL recipe)")
    aux_weight: float = Field(1.0, ge=0, description="loss weight of every unimodal auxiliary head")
    prediction: Literal["fused", "ensemble"] = Field(
        "fused",
        description="fused: the fusion head; ensemble: per row, the mean of the fusion head's and the "
        "present modalities' auxiliary heads' probabilities (needs aux_heads)",
    )
    modality_dropout: dict[str, float] = Field(
        default_factory=dict, description="training-time drop rate per modality"
    )
