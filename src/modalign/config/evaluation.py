"""The ``eval`` section: evaluation after training, with its missing-modality part."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from modalign.config._base import _Frozen


class RobustnessConfig(_Frozen):
    """Missing-modality evaluation of prediction tasks."""

    enabled: bool = Field(True, description="evaluate modality subsets, MCAR and MNAR")
    max_subsets: int = Field(64, gt=0, description="modality subsets evaluated (sampled beyond)")
    mcar_rates: tuple[float, ...] = Field(
        (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9), description="missing-at-random rates of the curve"
    )
    mnar_drop: dict[str, dict[Any, float]] = Field(
        default_factory=dict,
        description="MNAR scenario: modality -> {label value: drop probability} at test time",
    )
    explain_samples: int = Field(3, ge=0, description="samples whose per-step predictions are reported")

    @model_validator(mode="after")
    def _probabilities(self) -> RobustnessConfig:
        probs = [*self.mcar_rates, *(p for d in self.mnar_drop.values() for p in d.values())]
        if any(not 0 <= p <= 1 for p in probs):
            raise ValueError(f"mcar_rates and mnar_drop hold probabilities in [0, 1], got {probs}")
        return self


class EvalConfig(_Frozen):
    """Evaluation after training, on ``data.test_split``."""

    match_on: str | None = Field(None, description="positives share this column's value; null = same id")
    ks: tuple[int, ...] = Field(
        (1, 5, 10), min_length=1, description="k of the Recall@k retrieval metrics (each >= 1)"
    )
    zeroshot_text: str | None = Field(
        None, description="text modality giving class prototypes; null = the first text modality"
    )
    batch_size: int = Field(256, gt=0, description="rows per forward pass when embedding for evaluation")
    robustness: RobustnessConfig = Field(RobustnessConfig(), description="missing-modality evaluation")

    @field_validator("ks")
    @classmethod
    def _positive_ks(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in v):
            raise ValueError(f"every k of Recall@k must be >= 1, got {list(v)}")
        return v
