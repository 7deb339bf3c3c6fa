"""The ``model`` section: the shared embedding space, projection and teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from modalign.config._base import _Frozen


class InheritConfig(_Frozen):
    """TinyCLIP weight inheritance from model.teacher (training/inherit.py)."""

    every_k_layers: int = Field(1, ge=1, description="student layer i starts as teacher layer i * k")
    layers: tuple[int, ...] | None = Field(
        None, description="explicit teacher layer of each student layer (overrides every_k_layers)"
    )


class ModelConfig(_Frozen):
    embed_dim: int = Field(256, gt=0, description="shared embedding dimension D")
    head: Literal["linear", "mlp", "none"] = Field(
        "linear",
        description="projection from encoder features to D: linear, mlp (Linear-GELU-Linear) or none "
        "(the encoder's output is the embedding before normalisation; its width must be embed_dim)",
    )
    teacher: Path | None = Field(
        None,
        description="saved model whose embeddings distillation objectives mimic ({name}.teacher)",
    )
    inherit: InheritConfig | None = Field(
        None,
        description="initialise the student from model.teacher: kept layers and leading slices of its "
        "widths (the student's shapes must be no larger, its text tokenizers the same)",
    )
    teacher_on_augmented: bool = Field(
        False,
        description="run model.teacher on every (augmented) training batch instead of embedding each "
        "sample once unaugmented; needs the student's transforms to equal the teacher's",
    )
    cache_frozen_features: bool = Field(
        True,
        description="compute the outputs of frozen, non-augmented encoders once per sample and train "
        "only what follows them",
    )
    feature_cache_dir: Path | None = Field(
        None, description="keep those features on disk here, reused by later runs; null = this run only"
    )
