"""The ``modalities`` section: one named modality, how it is read and encoded."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from modalign.config._base import _Frozen
from modalign.config.transforms import _TRANSFORMS

Kind = Literal["image", "audio", "text", "tabular", "timeseries"]

_DEFAULT_ENCODERS = {
    "image": "image_cnn",
    "audio": "audio_cnn",
    "text": "text_transformer",
    "tabular": "tabular_mlp",
    "timeseries": "timeseries_conv",
}


class LastNBlocks(_Frozen):
    last_n_blocks: int = Field(..., ge=1, description="train the encoder's last N blocks and the projector")


class LoraConfig(_Frozen):
    """LoRA adapters on the encoder's linear layers (through peft)."""

    r: int = Field(8, ge=1, description="rank of the low-rank update")
    alpha: float = Field(16.0, gt=0, description="scale alpha (the update is alpha / r * B A)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter's input")
    targets: tuple[str, ...] = Field((), description="linear layer names to adapt; empty = every nn.Linear")


class ModalityConfig(_Frozen):
    """One named modality: where it is in the manifest, how it is read and encoded."""

    kind: Kind = Field(
        ..., description="image, audio, text, tabular or timeseries: picks transform and default encoder"
    )
    column: str | None = Field(None, description="manifest column; defaults to the modality name")
    encoder: str | None = Field(None, description="registered encoder; default per kind")
    preset: Literal["tiny", "small"] = Field("tiny", description="encoder size; encoder_params override it")
    encoder_params: dict[str, Any] = Field(default_factory=dict, description="override preset")
    transform: Any = Field(
        default_factory=dict,
        description="kind-specific transform settings; a pretrained encoder brings its own processor "
        "(tokenizer, size, normalisation) and only the settings written here override it",
    )
    trainable: Literal["all", "projector", "none"] | LastNBlocks = Field(
        "all",
        description="what trains: all, projector (frozen encoder), none (frozen tower) or "
        "{last_n_blocks: N} (the projector and the encoder's last N blocks)",
    )
    lora: LoraConfig | None = Field(None, description="LoRA adapters on the encoder's linear layers")
    lr_scale: float = Field(1.0, ge=0, description="this tower's learning rate = trainer.lr * lr_scale")

    @model_validator(mode="before")
    @classmethod
    def _typed_transform(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("kind"), str) and data["kind"] in _TRANSFORMS:
            t = data.get("transform")
            t = {} if t is None else t
            if isinstance(t, dict):
                data = {**data, "transform": _TRANSFORMS[data["kind"]].model_validate(t)}
            elif not isinstance(t, _TRANSFORMS[data["kind"]]):
                raise ValueError(f"transform must be a mapping of {data['kind']} settings, got {t!r}")
        return data

    @property
    def encoder_name(self) -> str:
        return self.encoder if self.encoder is not None else _DEFAULT_ENCODERS[self.kind]
