"""Attention fusion: a small transformer over one token per modality plus an always-present CLS."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from modalign.errors import ConfigError
from modalign.fusion.base import FusionModule, FusionOutput
from modalign.registry import register


@register("fusion", "attention")
class AttentionFusion(FusionModule):
    """Transformer encoder over modality tokens with a key-padding mask for absent ones.

    Each modality m is projected to one token ``W_m x_m + pos_m`` (d_model); a learned CLS token is
    prepended and is never masked, so a row with every modality absent attends only to CLS and
    gets a learned prior representation instead of NaN. The output is the final CLS state after a
    LayerNorm (pre-norm layers, GELU feed-forward of width ``4 * d_model``).

    Args:
        dims: modality name -> feature width F_m.
        d_model: token width, also the output width H.
        heads: attention heads (must divide ``d_model``).
        layers: transformer layers.
        dropout: dropout inside the layers.

    Example:
        >>> f = AttentionFusion({"a": 3, "b": 2}, d_model=16, heads=2)
        >>> f({"a": torch.randn(4, 3), "b": torch.randn(4, 2)}, {}).fused.shape
        torch.Size([4, 16])
    """

    def __init__(
        self,
        dims: Mapping[str, int],
        d_model: int = 64,
        heads: int = 4,
        layers: int = 2,
        dropout: float = 0.0,
    ):
        super().__init__(dims)
        if d_model % heads != 0:
            raise ConfigError(f"attention fusion: d_model={d_model} must be divisible by heads={heads}")
        self.d_model, self.heads, self.layers, self.dropout = d_model, heads, layers, dropout
        self.output_dim = d_model
        self.proj = nn.ModuleDict({m: nn.Linear(d, d_model) for m, d in self.dims.items()})
        self.pos = nn.Parameter(0.02 * torch.randn(len(self.names), d_model))
        self.cls = nn.Parameter(0.02 * torch.randn(d_model))
        layer = nn.TransformerEncoderLayer(
            d_model,
            heads,
            4 * d_model,
            dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor=False: padded tokens are simply masked, same math in train and eval.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def config(self) -> dict:
        return {
            "dims": self.dims,
            "d_model": self.d_model,
            "heads": self.heads,
            "layers": self.layers,
            "dropout": self.dropout,
        }

    def forward(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
    ) -> FusionOutput:
        """Fuse ``features`` where ``present`` (see :meth:`FusionModule.resolve`): ``fused`` (B, d_model)."""
        clean, mask, b = self.resolve(features, present)
        toks = [self.cls.expand(b, 1, -1)]
        for j, m in enumerate(self.names):
            toks.append((self.proj[m](clean[m]) + self.pos[j])[:, None, :])  # (B, 1, d)
        x = torch.cat(toks, dim=1)  # (B, 1 + M, d)
        absent = torch.stack([~mask[m] for m in self.names], dim=1)  # (B, M)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=absent.device), absent], dim=1)
        h = self.encoder(x, src_key_padding_mask=pad)  # (B, 1 + M, d)
        fused = self.norm(h[:, 0])  # (B, d)
        return FusionOutput(fused=fused, regularizer=fused.new_zeros(()))
