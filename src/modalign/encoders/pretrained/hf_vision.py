"""Pretrained vision models from a local Hugging Face directory (ViT, DeiT, CLIP vision, ConvNeXt, ...).

The directory holds ``config.json``, the weights and ``preprocessor_config.json`` (input size and
normalisation, see :func:`hf_image_settings`). Output: the model's pooled output
(``pooler_output``) when it has one, else the first token (``cls``) or the token mean (``mean``).
"""

from __future__ import annotations

from typing import Any

import torch

from modalign.data.transforms.base import Transform
from modalign.data.transforms.pretrained_image import PretrainedImageTransform, hf_image_settings
from modalign.encoders.pretrained._image import PretrainedImageEncoder
from modalign.encoders.pretrained._locate import hf_local_model, longest_layer_list, model_dir, read_json
from modalign.errors import ConfigError
from modalign.registry import register

POOLINGS = ("pooler", "cls", "mean")


@register("encoder", "hf_vision")
class HFVisionEncoder(PretrainedImageEncoder):
    """A local Hugging Face vision model -> (B, F) pooled features.

    Args:
        path: local model directory; or ``package``: an installed package that ships one.
        pooling: pooler (the model's pooled output), cls or mean; None = pooler when the model has
            one, else cls.
        load_weights, in_channels, image_size: see :class:`PretrainedImageEncoder`.
    """

    def __init__(
        self,
        path: str | None = None,
        package: str | None = None,
        pooling: str | None = None,
        load_weights: bool = True,
        in_channels: int = 3,
        image_size: int = 224,
    ):
        super().__init__()
        if pooling is not None and pooling not in POOLINGS:
            raise ConfigError(f"hf_vision: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        where = "hf_vision encoder_params"
        directory, self.model = hf_local_model(where, path, package, load_weights, "vision")
        config = self.model.config
        self.pooling = pooling
        width = getattr(config, "hidden_size", None) or (getattr(config, "hidden_sizes", None) or [None])[-1]
        if not isinstance(width, int):
            raise ConfigError(f"hf_vision: {directory}/config.json names no hidden_size")
        self.output_dim = width

    @classmethod
    def processor(cls, encoder_params: dict[str, Any], transform_params: dict[str, Any]) -> Transform:
        where = "hf_vision encoder_params"
        directory = model_dir(where, encoder_params.get("path"), encoder_params.get("package"))
        own = hf_image_settings(read_json(directory / "preprocessor_config.json"))
        return PretrainedImageTransform(str(directory), **{"channels": 3, **own, **transform_params})

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=inputs)
        pooled = getattr(out, "pooler_output", None)
        if self.pooling in (None, "pooler") and pooled is not None:
            return pooled.flatten(1)  # CNNs pool to (B, C, 1, 1)
        if self.pooling == "pooler":
            raise ConfigError("hf_vision: this model has no pooled output; use pooling cls or mean")
        hidden = out.last_hidden_state  # (B, T, F)
        return hidden[:, 0] if self.pooling in (None, "cls") else hidden.mean(1)

    def layer_blocks(self) -> list[torch.nn.Module]:
        return longest_layer_list(self.model)
