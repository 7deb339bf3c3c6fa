"""A small 2-D conv stack (GroupNorm, batch-independent) shared by image and audio encoders."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def conv_stack(in_channels: int, widths: Sequence[int], dropout: float = 0.0) -> nn.Sequential:
    """[conv3x3 - GroupNorm - GELU] x2 per width, downsampling by 2 between widths; ends pooled.

    Output (B, widths[-1]).
    """
    layers: list[nn.Module] = []
    c = in_channels
    for k, w in enumerate(widths):
        stride = 1 if k == 0 else 2
        layers += [
            nn.Conv2d(c, w, 3, stride=stride, padding=1),
            nn.GroupNorm(min(8, w), w),
            nn.GELU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.GroupNorm(min(8, w), w),
            nn.GELU(),
        ]
        c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)
