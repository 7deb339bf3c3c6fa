"""Tabular encoder: an MLP over standardised numerics, missing flags and category embeddings."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modalign.encoders.base import Encoder
from modalign.registry import register

PRESETS: dict[str, dict[str, dict]] = {
    "tabular_mlp": {"tiny": {"hidden": 64, "depth": 2}, "small": {"hidden": 256, "depth": 3}},
}


@register("encoder", "tabular_mlp")
class TabularMLP(Encoder):
    """Inputs (B, 2·n_numeric + n_categorical) laid out as the tabular transform writes them."""

    kind = "tabular"

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int] = (),
        hidden: int = 64,
        depth: int = 2,
        cat_dim: int = 8,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_numeric = n_numeric
        self.embeds = nn.ModuleList(nn.Embedding(n, cat_dim) for n in cardinalities)
        layers: list[nn.Module] = []
        width = 2 * n_numeric + cat_dim * len(cardinalities)
        for _ in range(depth):
            layers += [
                nn.Linear(width, hidden),
                nn.LayerNorm(hidden),
                nn.GELU(),
                nn.Dropout(dropout),
            ]
            width = hidden
        self.mlp = nn.Sequential(*layers)
        self.output_dim = hidden

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        k = 2 * self.n_numeric
        parts = [inputs[:, :k]]
        cats = inputs[:, k:].long()  # (B, n_categorical)
        parts += [emb(cats[:, j]) for j, emb in enumerate(self.embeds)]
        return self.mlp(torch.cat(parts, dim=1))
