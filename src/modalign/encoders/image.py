"""Image encoders: a small CNN and a small ViT. Inputs (B, C, H, W)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modalign.encoders._conv import conv_stack
from modalign.encoders.base import Encoder, transformer_blocks
from modalign.errors import ConfigError
from modalign.registry import register

PRESETS: dict[str, dict[str, dict]] = {
    "image_cnn": {"tiny": {"widths": (32, 64)}, "small": {"widths": (32, 64, 128, 256)}},
    "image_vit": {
        "tiny": {"patch_size": 2, "width": 64, "depth": 2, "heads": 4},
        "small": {"patch_size": 16, "width": 192, "depth": 6, "heads": 3},
    },
}


@register("encoder", "image_cnn")
class ImageCNN(Encoder):
    """Conv stack with GroupNorm and global average pooling -> (B, widths[-1])."""

    kind = "image"

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 224,
        widths: Sequence[int] = (32, 64),
        dropout: float = 0.0,
    ):
        super().__init__()
        self.net = conv_stack(in_channels, widths, dropout)
        self.output_dim = widths[-1]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.net(inputs)


@register("encoder", "image_vit")
class ImageViT(Encoder):
    """Patch embedding + pre-norm transformer; the CLS token is the output -> (B, width)."""

    kind = "image"

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 224,
        patch_size: int = 16,
        width: int = 192,
        depth: int = 6,
        heads: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ConfigError(
                f"image_vit: image_size {image_size} is not a multiple of patch_size {patch_size}"
            )
        n = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.pos = nn.Parameter(torch.randn(1, n + 1, width) * 0.02)
        self.blocks = transformer_blocks(width, depth, heads, dropout)
        self.norm = nn.LayerNorm(width)
        self.output_dim = width

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.patch(inputs).flatten(2).transpose(1, 2)  # (B, N, width)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.norm(self.blocks(x)[:, 0])
