"""Tabular encoders over the tabular transform's rows ``[scaled numerics, missing flags, categories]``.

* ``tabular_mlp``: LayerNorm-GELU MLP with category embeddings (the default for tables);
* ``mlp``: Linear-ReLU-Dropout-Linear with optional input dropout (M3CoL's omics encoder);
* ``identity``: the scaled numeric features themselves (fusion on raw features).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modalign.encoders.base import Encoder
from modalign.errors import ConfigError
from modalign.registry import register

PRESETS: dict[str, dict[str, dict]] = {
    "tabular_mlp": {"tiny": {"hidden": 64, "depth": 2}, "small": {"hidden": 256, "depth": 3}},
    "mlp": {"tiny": {"hidden": 64, "output_dim": 64}, "small": {"hidden": 256, "output_dim": 256}},
    "identity": {"tiny": {}, "small": {}},
}


@register("encoder", "tabular_mlp")
class TabularMLP(Encoder):
    """Inputs (B, 2·n_numeric + n_categorical) laid out as the tabular transform writes them
    (n_numeric + n_categorical without missing flags)."""

    kind = "tabular"

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int] = (),
        hidden: int = 64,
        depth: int = 2,
        cat_dim: int = 8,
        dropout: float = 0.0,
        missing_flags: bool = True,
    ):
        super().__init__()
        self.n_numeric = n_numeric
        self.n_dense = 2 * n_numeric if missing_flags else n_numeric
        self.embeds = nn.ModuleList(nn.Embedding(n, cat_dim) for n in cardinalities)
        layers: list[nn.Module] = []
        width = self.n_dense + cat_dim * len(cardinalities)
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
        k = self.n_dense
        parts = [inputs[:, :k]]
        cats = inputs[:, k:].long()  # (B, n_categorical)
        parts += [emb(cats[:, j]) for j, emb in enumerate(self.embeds)]
        return self.mlp(torch.cat(parts, dim=1))


def _numeric_only(name: str, cardinalities: Sequence[int]) -> None:
    if len(cardinalities):
        raise ConfigError(
            f"encoder {name!r} takes numeric features only; use tabular_mlp for categorical ones"
        )


@register("encoder", "mlp")
class FeatureMLP(Encoder):
    """Linear(F_in, hidden)-ReLU-Dropout-Linear(hidden, output_dim) on (B, F_in) numeric rows.

    ``input_dropout`` drops input features in training (regularises wide, few-sample inputs such as
    omics); it draws no random numbers when 0. M3CoL's omics encoder (Kumar et al., arXiv 2409.17777).
    """

    kind = "tabular"

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int] = (),
        hidden: int = 64,
        output_dim: int = 64,
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        missing_flags: bool = True,
    ):
        super().__init__()
        _numeric_only("mlp", cardinalities)
        if not 0.0 <= input_dropout < 1.0:
            raise ConfigError(f"encoder 'mlp': input_dropout must be in [0, 1), got {input_dropout}")
        width = 2 * n_numeric if missing_flags else n_numeric
        self.input_dropout = input_dropout
        self.net = nn.Sequential(
            nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, output_dim)
        )
        self.output_dim = output_dim

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.input_dropout > 0:  # skipped at 0 so the default draws no extra random numbers
            x = nn.functional.dropout(x, self.input_dropout, self.training)
        return self.net(x)


@register("encoder", "identity")
class IdentityEncoder(Encoder):
    """The scaled numeric features themselves, (B, n_numeric) (missing flags dropped)."""

    kind = "tabular"

    def __init__(self, n_numeric: int, cardinalities: Sequence[int] = (), missing_flags: bool = True):
        super().__init__()
        _numeric_only("identity", cardinalities)
        self.output_dim = n_numeric

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return inputs[:, : self.output_dim]
