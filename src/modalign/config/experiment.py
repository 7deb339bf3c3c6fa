"""A whole experiment: the top-level schema, its objectives and the checks across sections."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from modalign.config._base import _Frozen
from modalign.config.data import DataConfig
from modalign.config.evaluation import EvalConfig
from modalign.config.fusion import FusionConfig
from modalign.config.modality import ModalityConfig
from modalign.config.model import ModelConfig
from modalign.config.trainer import TrainerConfig


class ObjectiveConfig(_Frozen):
    name: str = Field("clip", description="registered objective name")
    weight: float = Field(1.0, description="weight of this objective in the sum")
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the objective")


class ExperimentConfig(_Frozen):
    """A whole experiment: data, modalities, model, objectives, trainer and evaluation."""

    data: DataConfig = Field(..., description="the manifest and its splits")
    modalities: dict[str, ModalityConfig] = Field(
        ..., description="modality name -> how it is read and encoded"
    )
    model: ModelConfig = Field(ModelConfig(), description="shared embedding space and projection")
    objectives: tuple[ObjectiveConfig, ...] = Field(
        (ObjectiveConfig(),), description="weighted objectives over the embeddings; [] with fusion only"
    )
    fusion: FusionConfig | None = Field(None, description="fusion + task heads for prediction")
    trainer: TrainerConfig = Field(TrainerConfig(), description="optimisation, checkpoints, devices")
    eval: EvalConfig = Field(EvalConfig(), description="evaluation after training")

    @field_validator("modalities")
    @classmethod
    def _some_modalities(cls, v: dict[str, ModalityConfig]) -> dict[str, ModalityConfig]:
        if len(v) < 1:
            raise ValueError("at least one modality is required")
        return v

    @field_validator("objectives")
    @classmethod
    def _unique_objectives(cls, v: tuple[ObjectiveConfig, ...]) -> tuple[ObjectiveConfig, ...]:
        names = [o.name for o in v]
        if len(set(names)) != len(names):
            raise ValueError(f"objective names must be unique, got {names}")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        from modalign.registry import check_name  # names only: imports no model code

        if not self.objectives and self.fusion is None:
            raise ValueError("objectives is empty and there is no fusion: nothing to train")
        for o in self.objectives:
            check_name("objective", o.name)  # unknown names fail here, with close matches
        if self.fusion is not None:
            check_name("fusion", self.fusion.name)
            unknown = set(self.fusion.modality_dropout) - set(self.modalities)
            if unknown:
                raise ValueError(
                    f"fusion.modality_dropout names {sorted(unknown)}, "
                    f"not in modalities {list(self.modalities)}"
                )
            if self.fusion.prediction == "ensemble" and not self.fusion.aux_heads:
                raise ValueError(
                    "fusion.prediction=ensemble averages the auxiliary heads: set fusion.aux_heads"
                )
            if self.trainer.accumulation == "cached":
                raise ValueError(
                    "trainer.accumulation=cached is for contrastive objectives only; with fusion "
                    "tasks (per-sample losses) use a smaller trainer.batch_size instead"
                )
        if self.model.teacher is None and (self.model.inherit is not None or self.model.teacher_on_augmented):
            raise ValueError("model.inherit and model.teacher_on_augmented need model.teacher")
        if self.trainer.accumulation == "cached" and self.model.teacher is not None:
            # GradCache replays only the objectives over the model's embeddings; the teacher's
            # precomputed rows would silently drop out of the loss, so refuse instead.
            raise ValueError(
                "trainer.accumulation=cached does not carry model.teacher's embeddings through its "
                "micro-batches; distil with accumulation=none (a smaller batch_size) instead"
            )
        for m in self.modalities.values():
            check_name("encoder", m.encoder_name)
        if self.eval.zeroshot_text is not None:
            text = self.modalities.get(self.eval.zeroshot_text)
            if text is None or text.kind != "text":
                raise ValueError(
                    f"eval.zeroshot_text={self.eval.zeroshot_text!r} must name a text modality "
                    f"in modalities ({list(self.modalities)})"
                )
        return self

    def column(self, modality: str) -> str:
        m = self.modalities[modality]
        return m.column if m.column is not None else modality
