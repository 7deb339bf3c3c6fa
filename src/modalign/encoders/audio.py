"""Audio encoder: a 1-D CNN over log-mel frames (mel bins as channels). Inputs (B, n_mels, T).

Temporal convolutions with mel bins as input channels (as in TC-ResNet keyword spotting, arXiv
1904.03814) cost a fraction of a 2-D CNN over the spectrogram image on CPU (measured 60 ms vs 1.7 s
for fwd+bwd of 128 one-second clips on one core) for spoken-word tasks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from modalign.encoders.base import Encoder
from modalign.registry import register

PRESETS: dict[str, dict[str, dict]] = {
    "audio_cnn": {
        "tiny": {"widths": (64, 128, 128, 128), "kernel_size": 5},
        "small": {"widths": (128, 256, 256, 256, 256), "kernel_size": 5},
    },
}


@register("encoder", "audio_cnn")
class AudioCNN(Encoder):
    """Per-utterance standardised log-mel -> [Conv1d-GroupNorm-GELU] stages -> mean+max pool.

    The first stage keeps the frame rate, every later one halves it. Output (B, 2·widths[-1]).
    """

    kind = "audio"

    def __init__(
        self,
        n_mels: int = 64,
        widths: Sequence[int] = (64, 128, 128, 128),
        kernel_size: int = 5,
        dropout: float = 0.0,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        c = n_mels
        for k, w in enumerate(widths):
            layers += [
                nn.Conv1d(c, w, kernel_size, stride=1 if k == 0 else 2, padding=kernel_size // 2),
                nn.GroupNorm(1, w),
                nn.GELU(),
            ]
            c = w
        self.net = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.output_dim = 2 * widths[-1]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        # Standardise each example so that recording level does not dominate.
        mean = inputs.mean(dim=(1, 2), keepdim=True)
        std = inputs.std(dim=(1, 2), keepdim=True).clamp_min(1e-5)
        h = self.net((inputs - mean) / std)  # (B, C, T')
        return self.dropout(torch.cat([h.mean(-1), h.amax(-1)], dim=1))
