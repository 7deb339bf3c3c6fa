"""Time-series encoders over padded (B, T, C) sequences: 1-D convolution and GRU.

Padding: pass ``mask`` (B, T) (True at real steps), or leave it None and pad with NaN (the default
of :class:`modalign.data.transforms.timeseries.TimeSeriesTransform`), in which case the mask is
recovered as "no NaN in the step". Either way a padded sequence encodes exactly like the same
sequence alone: the conv encoder zeroes padded steps before every layer (matching the zero
"same"-padding a lone sequence gets) and mean-pools over real steps only; the GRU packs sequences
by length. No batch-dependent normalisation is used.
"""

from __future__ import annotations

import torch
from torch import nn

from modalign.encoders.base import Encoder
from modalign.errors import ConfigError
from modalign.registry import register

_SIZES = {"tiny": {"hidden": 32, "layers": 2}, "small": {"hidden": 64, "layers": 3}}
# Presets only pick numbers; the user's encoder_params override them (encoders.encoder_kwargs).
PRESETS: dict[str, dict[str, dict]] = {"timeseries_conv": _SIZES, "timeseries_gru": _SIZES}


def _resolve_mask(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (x with padded steps zeroed, (B, T) mask); at least one step per row is kept."""
    m = ~torch.isnan(x).any(dim=-1) if mask is None else mask.to(x.device).bool()
    x = torch.where(m[..., None], x, torch.zeros((), dtype=x.dtype, device=x.device))
    return x, m


@register("encoder", "timeseries_conv")
class TimeSeriesConv(Encoder):
    """Stack of 1-D convolutions (GELU, per-step LayerNorm) + masked mean pooling + Linear.

    Args:
        in_channels: C.
        output_dim: F.
        hidden: conv channels.
        layers: conv layers.
        kernel_size: odd kernel width ("same" padding).
        dropout: dropout before the output Linear.

    Example:
        >>> enc = TimeSeriesConv(in_channels=2, output_dim=8)
        >>> enc(torch.randn(3, 10, 2)).shape
        torch.Size([3, 8])
    """

    kind = "timeseries"

    def __init__(
        self,
        in_channels: int = 1,
        output_dim: int = 64,
        hidden: int = 64,
        layers: int = 3,
        kernel_size: int = 5,
        dropout: float = 0.0,
    ):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")
        self.output_dim = output_dim
        chans = [in_channels] + [hidden] * layers
        self.convs = nn.ModuleList(
            [
                nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2)
                for a, b in zip(chans[:-1], chans[1:], strict=True)
            ]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(hidden) for _ in range(layers)])
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, output_dim)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) padded sequences (+ optional (B, T) mask) -> (B, F)."""
        x, m = _resolve_mask(inputs, mask)
        mf = m[..., None].to(x.dtype)  # (B, T, 1)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = conv((x * mf).transpose(1, 2)).transpose(1, 2)  # (B, T, hidden)
            x = self.act(norm(h))
        pooled = (x * mf).sum(dim=1) / mf.sum(dim=1).clamp_min(1.0)  # (B, hidden)
        return self.out(self.drop(pooled))


@register("encoder", "timeseries_gru")
class TimeSeriesGRU(Encoder):
    """GRU over the real steps of each sequence; the last hidden state(s) -> Linear.

    Args:
        in_channels: C.
        output_dim: F.
        hidden: GRU hidden size.
        layers: GRU layers.
        bidirectional: run both directions and concatenate the final states.
        dropout: dropout between GRU layers and before the output Linear.
    """

    kind = "timeseries"

    def __init__(
        self,
        in_channels: int = 1,
        output_dim: int = 64,
        hidden: int = 64,
        layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.output_dim = output_dim
        self.gru = nn.GRU(
            in_channels,
            hidden,
            layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden * (2 if bidirectional else 1), output_dim)

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C) padded sequences (+ optional (B, T) mask) -> (B, F)."""
        x, m = _resolve_mask(inputs, mask)
        lengths = m.sum(dim=1).clamp_min(1).cpu()  # (B,)
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        _, h = self.gru(packed)  # (layers * dirs, B, hidden)
        dirs = 2 if self.gru.bidirectional else 1
        last = h[-dirs:].transpose(0, 1).reshape(x.shape[0], -1)  # (B, dirs * hidden)
        return self.out(self.drop(last))
