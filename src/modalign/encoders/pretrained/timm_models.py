"""timm image models from a local weights file: ``timm.create_model(model, pretrained=False, num_classes=0)``.

``encoder_params``: ``model`` (a timm architecture name), ``weights`` (a local ``.safetensors``, or a
torch file read with ``weights_only=True``; a classifier head in it is ignored), ``model_kwargs``
(more ``create_model`` keywords, e.g. ``img_size``). Nothing is downloaded. Output: timm's pooled
features (the classifier removed), ``num_features`` wide. The processor is :class:`ImageTransform`
with timm's resolved data config of the model: input size, mean, std, interpolation and
``crop_pct`` (shorter side resized to ``floor(size / crop_pct)``, then the centre crop).
``trainable: {last_n_blocks: N}`` counts timm's own coarse layer groups (``group_matcher``: stem,
stages or blocks, final norm).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from modalign.data.transforms.base import Transform
from modalign.data.transforms.image import ImageTransform
from modalign.encoders.pretrained._image import PretrainedImageEncoder, require_rgb, require_rgb_transform
from modalign.encoders.pretrained._locate import load_weights_file
from modalign.errors import ConfigError
from modalign.offline import offline_import
from modalign.registry import register

WHERE = "timm encoder_params"


def create(model: str, model_kwargs: dict[str, Any] | None) -> Any:
    """``timm.create_model(model, pretrained=False, num_classes=0, **model_kwargs)`` with clear errors."""
    timm = offline_import("timm", extra="vision")
    try:
        return timm.create_model(model, pretrained=False, num_classes=0, **(model_kwargs or {}))
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{WHERE}: timm cannot build {model!r}: {e}") from None


@register("encoder", "timm")
class TimmEncoder(PretrainedImageEncoder):
    """A timm model's pooled features -> (B, num_features) (see module docstring).

    Args:
        model, weights, model_kwargs: see module docstring.
        load_weights, in_channels, image_size: see :class:`PretrainedImageEncoder`.
    """

    def __init__(
        self,
        model: str,
        weights: str | None = None,
        load_weights: bool = True,
        model_kwargs: dict[str, Any] | None = None,
        in_channels: int = 3,
        image_size: int = 224,
    ):
        super().__init__()
        require_rgb("timm", in_channels)
        self.net = create(model, model_kwargs)
        if load_weights:
            if weights is None:
                raise ConfigError(f"{WHERE}: give weights (a local .safetensors or .pt file)")
            self._load(load_weights_file(Path(weights).expanduser()), weights)
        self.output_dim = int(self.net.num_features)

    def _load(self, state: dict[str, torch.Tensor], file: str) -> None:
        heads = self.net.pretrained_cfg.get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)
        try:
            missing, unexpected = self.net.load_state_dict(state, strict=False)
        except RuntimeError as e:  # shapes that do not fit
            raise ConfigError(f"{WHERE}: weights {file} do not fit this model: {e}") from None
        foreign = [k for k in unexpected if not any(k.startswith(f"{h}.") for h in heads)]
        if missing or foreign:
            raise ConfigError(
                f"{WHERE}: weights {file} do not fit this model "
                f"(missing {missing[:3]}, unexpected {foreign[:3]})"
            )

    @classmethod
    def processor(cls, encoder_params: dict[str, Any], transform_params: dict[str, Any]) -> Transform:
        require_rgb_transform("timm", transform_params)
        if not isinstance(encoder_params.get("model"), str):
            raise ConfigError(f"{WHERE}: give model (a timm architecture name)")
        timm = offline_import("timm", extra="vision")
        try:
            with torch.device("meta"):  # only the configuration is needed: no weights are allocated
                net = create(encoder_params["model"], encoder_params.get("model_kwargs"))
        except ConfigError:  # a model whose construction reads tensor values: build it for real
            net = create(encoder_params["model"], encoder_params.get("model_kwargs"))
        data = timm.data.resolve_model_data_config(net)
        _, h, w = data["input_size"]
        if h != w or data.get("crop_mode", "center") != "center":
            raise ConfigError(
                f"{WHERE}: input size {h}x{w} / crop_mode {data.get('crop_mode')!r} is not supported "
                "(square, center)"
            )
        if data["interpolation"] not in ("bicubic", "bilinear", "nearest"):
            raise ConfigError(f"{WHERE}: interpolation {data['interpolation']!r} is not supported")
        own = {
            "size": int(h),
            "channels": 3,
            "mean": tuple(float(v) for v in data["mean"]),
            "std": tuple(float(v) for v in data["std"]),
            "interpolation": data["interpolation"],
            "crop_pct": float(data.get("crop_pct") or 1.0),
        }
        return ImageTransform(**{**own, **transform_params})

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)

    def layer_blocks(self) -> list[nn.Module]:
        from timm.models import group_modules

        try:
            groups = group_modules(self.net, self.net.group_matcher(coarse=True))
        except (AttributeError, NotImplementedError, TypeError):
            raise ConfigError(
                f"timm model {type(self.net).__name__} names no layer groups: "
                "use trainable all, none or projector"
            ) from None
        return [nn.ModuleList([self.net.get_submodule(n) for n in groups[g]]) for g in sorted(groups)]
