"""Text encoder: a small transformer over token ids (pad id 0), mean or CLS pooling."""

from __future__ import annotations

import torch
from torch import nn

from modalign.encoders.base import Encoder, transformer_blocks
from modalign.errors import ConfigError
from modalign.registry import register

PRESETS: dict[str, dict[str, dict]] = {
    "text_transformer": {
        "tiny": {"width": 64, "depth": 2, "heads": 4},
        "small": {"width": 256, "depth": 4, "heads": 4},
    },
}


@register("encoder", "text_transformer")
class TextTransformer(Encoder):
    """Token + position embeddings, pre-norm transformer with a key-padding mask, pooling.

    Args:
        pooling: "mean" over non-pad tokens, or "cls" (a learned token prepended to the sequence).
    """

    kind = "text"

    def __init__(
        self,
        vocab_size: int,
        max_length: int = 64,
        width: int = 64,
        depth: int = 2,
        heads: int = 4,
        pooling: str = "mean",
        dropout: float = 0.0,
    ):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"text_transformer: pooling must be 'mean' or 'cls', got {pooling!r}")
        self.pooling = pooling
        self.tok = nn.Embedding(vocab_size, width, padding_idx=0)
        self.pos = nn.Parameter(torch.randn(1, max_length + 1, width) * 0.02)
        if pooling == "cls":
            self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.blocks = transformer_blocks(width, depth, heads, dropout)
        self.norm = nn.LayerNorm(width)
        self.output_dim = width

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        pad = inputs == 0  # (B, T)
        x = self.tok(inputs)
        if self.pooling == "cls":
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
            pad = torch.cat([torch.zeros_like(pad[:, :1]), pad], dim=1)
        x = x + self.pos[:, : x.shape[1]]
        x = self.norm(self.blocks(x, src_key_padding_mask=pad))  # (B, T, width)
        if self.pooling == "cls":
            return x[:, 0]
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
