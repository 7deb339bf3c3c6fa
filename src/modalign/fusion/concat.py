"""Late fusion by concatenation, with a learned "missing" embedding per modality."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from modalign.fusion.base import FusionModule, FusionOutput
from modalign.registry import register


@register("fusion", "concat")
class ConcatFusion(FusionModule):
    """Concatenate per-modality features; an absent modality contributes a learned vector.

    The learned ``missing[m]`` (F_m,) vector replaces absent rows, so "absent" is never confused
    with a real all-zero feature vector. An optional MLP (Linear-ReLU-Dropout) maps the
    concatenation (B, sum F_m) to ``hidden`` (B, H).

    Args:
        dims: modality name -> feature width F_m.
        hidden: width H of the optional MLP; None returns the concatenation itself.
        dropout: dropout after the MLP activation.

    Example:
        >>> f = ConcatFusion({"a": 3, "b": 2}, hidden=8)
        >>> out = f({"a": torch.randn(4, 3)}, {})
        >>> out.fused.shape
        torch.Size([4, 8])
    """

    def __init__(self, dims: Mapping[str, int], hidden: int | None = None, dropout: float = 0.0):
        super().__init__(dims)
        self.hidden = hidden
        self.dropout = dropout
        # Small init: the missing vector starts near "no information".
        self.missing = nn.ParameterDict(
            {m: nn.Parameter(0.02 * torch.randn(d)) for m, d in self.dims.items()}
        )
        total = sum(self.dims.values())
        if hidden is None:
            self.mlp: nn.Module = nn.Identity()
            self.output_dim = total
        else:
            self.mlp = nn.Sequential(nn.Linear(total, hidden), nn.ReLU(), nn.Dropout(dropout))
            self.output_dim = hidden

    def config(self) -> dict:
        return {"dims": self.dims, "hidden": self.hidden, "dropout": self.dropout}

    def forward(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
    ) -> FusionOutput:
        """Fuse ``features`` where ``present`` (see :meth:`FusionModule.resolve`): ``fused`` (B, H)."""
        clean, mask, _ = self.resolve(features, present)
        parts = [torch.where(mask[m][:, None], clean[m], self.missing[m][None, :]) for m in self.names]
        fused = self.mlp(torch.cat(parts, dim=1))  # (B, sum F_m) -> (B, H)
        return FusionOutput(fused=fused, regularizer=fused.new_zeros(()))
