"""Any encoder exported with TorchScript (``torch.jit.save``), loaded from a local file.

The scripted module maps the modality's transform output (the kind's default transform, set by
the config's ``transform``) to (B, output_dim) features. Its weights are saved in
``model.safetensors`` with the rest of the model; the architecture stays in the ``.pt`` file, so a
saved model needs that file at the same path. Only load files you trust: a TorchScript archive
holds code that runs when it is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modalign.encoders.base import Encoder
from modalign.errors import ConfigError
from modalign.registry import register


@register("encoder", "torchscript")
class TorchScriptEncoder(Encoder):
    """A scripted/traced module from ``path`` -> (B, output_dim).

    Args:
        path: the ``.pt`` file written by ``torch.jit.save``.
        output_dim: width of the module's output features.
        input_shape: keywords the transform passes (``in_channels``, ``vocab_size``, ...); unused.
    """

    pretrained = False

    def __init__(self, path: str, output_dim: int, **input_shape: Any):
        super().__init__()
        file = Path(path).expanduser()
        if not file.is_file():
            raise ConfigError(f"torchscript: {file} does not exist; export your encoder with torch.jit.save")
        try:
            self.module = torch.jit.load(str(file), map_location="cpu")
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"torchscript: {file} is not a TorchScript archive ({e})") from None
        self.output_dim = int(output_dim)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.module(inputs)
