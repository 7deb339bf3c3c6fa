"""What the pretrained image adapters share: their kind, and RGB input at their processor's size."""

from __future__ import annotations

from typing import Any

from modalign.encoders.base import Encoder
from modalign.errors import ConfigError


class PretrainedImageEncoder(Encoder):
    """Base of the pretrained image adapters (efficientnet_lite, hf_vision, open_clip_image, timm).

    Besides its own arguments, every subclass's constructor takes:
        load_weights: False builds the architecture only (a saved modalign model brings its weights).
        in_channels, image_size: given by the processor.
    """

    kind = "image"
    pretrained = True


def require_rgb(name: str, in_channels: int) -> None:
    """The constructor's check of an adapter that takes 3-channel images only."""
    if in_channels != 3:
        raise ConfigError(f"{name} takes RGB images: leave transform.channels at 3")


def require_rgb_transform(name: str, transform_params: dict[str, Any]) -> None:
    """The processor's check: the config may not ask such an adapter for another channel count."""
    if transform_params.get("channels", 3) != 3:
        raise ConfigError(f"{name} takes RGB images (greyscale is converted): remove channels")
