"""open_clip towers from local files: a model name or a model config JSON, plus a weights file.

``encoder_params``:
    ``model``: an architecture open_clip ships (``open_clip.list_models()``, e.g. ``ViT-B-32``), or
    ``config``: a JSON file holding an open_clip model config (``embed_dim``, ``vision_cfg``,
    ``text_cfg``), bare or as open_clip's ``open_clip_config.json`` (``model_cfg`` +
    ``preprocess_cfg``);
    ``weights``: the model's weights file (the whole CLIP state dict: ``.safetensors``, or a torch file
    read with ``weights_only=True``), loaded by open_clip's own checkpoint loader. Nothing is downloaded.

``open_clip_image`` is the visual tower (``encode_image`` unnormalised: (B, embed_dim)); its processor
is :class:`ImageTransform` with open_clip's preprocessing config (input size from the tower, mean,
std, interpolation; resize of the shorter side + centre crop, open_clip's ``resize_mode: shortest``).
``open_clip_text`` is the text tower (``encode_text``); its processor is open_clip's tokenizer
(:class:`~modalign.data.transforms.open_clip_text.OpenCLIPTextTransform`): texts longer than the
context length are truncated (the end-of-text token kept). The resolved model config travels with
the processor into the saved model, so a saved model needs neither the config nor the weights file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modalign.data.transforms.base import Transform
from modalign.data.transforms.image import ImageTransform
from modalign.data.transforms.open_clip_text import OpenCLIPTextTransform
from modalign.encoders.base import Encoder
from modalign.encoders.pretrained._image import PretrainedImageEncoder, require_rgb, require_rgb_transform
from modalign.encoders.pretrained._locate import longest_layer_list
from modalign.errors import ConfigError
from modalign.offline import offline_import
from modalign.registry import register

WHERE = "open_clip encoder_params"


def open_clip_config(model: str | None, config: str | dict[str, Any] | None) -> dict[str, Any]:
    """``{"model_cfg": ..., "preprocess_cfg": ...}`` of a built-in ``model`` or a ``config`` file/dict.

    Raises:
        ConfigError: neither or both given, an unknown name, or a file that is not a model config.
    """
    if (model is None) == (config is None):
        raise ConfigError(
            f"{WHERE}: give exactly one of model (a name open_clip ships) or config (a JSON file)"
        )
    if model is not None:
        found = offline_import("open_clip", extra="vision").get_model_config(model)
        if found is None:
            raise ConfigError(f"{WHERE}: open_clip has no model {model!r} (see open_clip.list_models())")
        return {"model_cfg": found, "preprocess_cfg": {}}
    if isinstance(config, dict):
        raw: Any = config
    else:
        file = Path(str(config)).expanduser()
        try:
            raw = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{WHERE}: cannot read the model config {file}: {e}") from None
    cfg = raw.get("model_cfg", raw) if isinstance(raw, dict) else None
    if not isinstance(cfg, dict) or not {"embed_dim", "vision_cfg", "text_cfg"} <= set(cfg):
        raise ConfigError(
            f"{WHERE}: config {config} is not an open_clip model config (embed_dim, vision_cfg, text_cfg)"
        )
    return {"model_cfg": cfg, "preprocess_cfg": dict(raw.get("preprocess_cfg") or {})}


def build_clip(resolved: dict[str, Any], weights: str | None, load_weights: bool) -> Any:
    """The open_clip model of a resolved config; its weights from ``weights`` when ``load_weights``."""
    oc = offline_import("open_clip", extra="vision")
    cfg = json.loads(json.dumps(resolved["model_cfg"]))  # a deep copy
    if "multimodal_cfg" in cfg:
        raise ConfigError(f"{WHERE}: CoCa models (multimodal_cfg) are not supported")
    cfg["vision_cfg"].pop("timm_model_pretrained", None)  # never fetch tower weights from a hub
    cfg["text_cfg"]["hf_model_pretrained"] = False
    custom_text = bool(cfg.pop("custom_text", False)) or "hf_model_name" in cfg["text_cfg"]
    try:
        model = (oc.CustomTextCLIP if custom_text else oc.CLIP)(**cfg)
    except (TypeError, ValueError, KeyError, OSError, RuntimeError) as e:  # OSError: an HF text tower offline
        raise ConfigError(f"{WHERE}: open_clip cannot build this model config: {e}") from None
    if load_weights:
        if weights is None:
            raise ConfigError(
                f"{WHERE}: give weights (a local .safetensors or .pt file); nothing is downloaded"
            )
        file = Path(weights).expanduser()
        if not file.is_file():
            raise ConfigError(f"{WHERE}: weights file {file} does not exist")
        try:
            oc.load_checkpoint(model, str(file), strict=True, weights_only=True)
        except Exception as e:  # torch/safetensors raise many types on foreign files or keys
            raise ConfigError(f"{WHERE}: cannot load weights {file} into this model: {e}") from None
    return model


def _resolve(encoder_params: dict[str, Any]) -> dict[str, Any]:
    if isinstance(encoder_params.get("model_cfg"), dict):  # a saved model: the processor's copy
        return {"model_cfg": encoder_params["model_cfg"], "preprocess_cfg": {}}
    return open_clip_config(encoder_params.get("model"), encoder_params.get("config"))


def _tower_source(
    model: str | None,
    config: str | None,
    weights: str | None,
    load_weights: bool,
    model_cfg: dict[str, Any] | None,
) -> tuple[Any, int]:
    """The whole open_clip model a tower's constructor arguments name, and its ``embed_dim``."""
    resolved = _resolve({"model": model, "config": config, "model_cfg": model_cfg})
    return build_clip(resolved, weights, load_weights), int(resolved["model_cfg"]["embed_dim"])


class OpenCLIPImageTransform(ImageTransform):
    """The image processor: also hands the resolved model config to the encoder (and so to the saved
    model's config.json)."""

    def __init__(self, model_cfg: dict[str, Any], **settings: Any):
        super().__init__(**settings)
        self.model_cfg = model_cfg

    def encoder_kwargs(self) -> dict[str, Any]:
        return {**super().encoder_kwargs(), "model_cfg": self.model_cfg}


def image_settings(resolved: dict[str, Any]) -> dict[str, Any]:
    """ImageTransform settings of open_clip's preprocessing: its defaults, the config's
    ``preprocess_cfg``, the input size of the visual tower (as ``create_model`` sets them)."""
    oc = offline_import("open_clip", extra="vision")
    cfg = oc.transform.merge_preprocess_dict(oc.transform.PreprocessCfg(), resolved["preprocess_cfg"])
    size = resolved["model_cfg"]["vision_cfg"].get("image_size", cfg["size"])
    size = [size, size] if isinstance(size, int) else list(size)
    if size[0] != size[1]:
        raise ConfigError(f"{WHERE}: non-square input size {size} is not supported")
    if cfg.get("resize_mode", "shortest") != "shortest" or cfg["interpolation"] not in (
        "bicubic",
        "bilinear",
    ):
        raise ConfigError(
            f"{WHERE}: preprocess resize_mode {cfg.get('resize_mode')!r} / interpolation "
            f"{cfg['interpolation']!r} is not supported (shortest with bicubic or bilinear is)"
        )
    return {
        "size": int(size[0]),
        "channels": 3,
        "mean": tuple(cfg["mean"]),
        "std": tuple(cfg["std"]),
        "interpolation": cfg["interpolation"],
    }


@register("encoder", "open_clip_image")
class OpenCLIPImage(PretrainedImageEncoder):
    """open_clip's visual tower -> (B, embed_dim) (see module docstring).

    Args:
        model, config, weights: see module docstring.
        model_cfg: the resolved model config (set by the processor).
        load_weights, in_channels, image_size: see :class:`PretrainedImageEncoder`.
    """

    def __init__(
        self,
        model: str | None = None,
        config: str | None = None,
        weights: str | None = None,
        load_weights: bool = True,
        model_cfg: dict[str, Any] | None = None,
        in_channels: int = 3,
        image_size: int = 224,
    ):
        super().__init__()
        require_rgb("open_clip_image", in_channels)
        clip, self.output_dim = _tower_source(model, config, weights, load_weights, model_cfg)
        self.visual: nn.Module = clip.visual

    @classmethod
    def processor(cls, encoder_params: dict[str, Any], transform_params: dict[str, Any]) -> Transform:
        require_rgb_transform("open_clip_image", transform_params)
        resolved = _resolve(encoder_params)
        own = image_settings(resolved)
        return OpenCLIPImageTransform(resolved["model_cfg"], **{**own, **transform_params})

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.visual(inputs)

    def layer_blocks(self) -> list[nn.Module]:
        return longest_layer_list(self.visual)


@register("encoder", "open_clip_text")
class OpenCLIPText(Encoder):
    """open_clip's text tower (token embedding, transformer, pooling, projection) -> (B, embed_dim).

    Args: as :class:`OpenCLIPImage`; ``context_length`` is given by the processor.
    """

    kind = "text"
    pretrained = True

    def __init__(
        self,
        model: str | None = None,
        config: str | None = None,
        weights: str | None = None,
        load_weights: bool = True,
        model_cfg: dict[str, Any] | None = None,
        context_length: int | None = None,
    ):
        super().__init__()
        clip, self.output_dim = _tower_source(model, config, weights, load_weights, model_cfg)
        clip.visual = None  # the image tower and the logit scale belong elsewhere
        clip.logit_scale = None
        clip.logit_bias = None
        self.clip: Any = clip

    @classmethod
    def processor(cls, encoder_params: dict[str, Any], transform_params: dict[str, Any]) -> Transform:
        resolved = _resolve(encoder_params)
        return OpenCLIPTextTransform(resolved["model_cfg"], encoder_params.get("model"))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(inputs)

    def layer_blocks(self) -> list[nn.Module]:
        return longest_layer_list(self.clip)
