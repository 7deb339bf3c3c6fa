"""Encoder contract and the tower that turns an encoder's features into unit-norm embeddings.

Every encoder is an ``nn.Module`` with ``kind`` (image/text/audio/tabular/timeseries), ``output_dim``
(feature width F) and ``forward(inputs) -> (B', F)`` that sees **only the present rows** (``inputs``
a tensor or a dict of tensors, see :class:`~modalign.types.Batch`); the
:class:`ModalityTower` selects those rows, projects to the shared dimension D, L2-normalises and puts
zeros in absent rows. Encoders therefore never see placeholders, and batch-independent layers
(GroupNorm/LayerNorm, never BatchNorm) keep ``encode`` independent of the batch size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from modalign.errors import ConfigError
from modalign.types import ENCODER_FEATURES, Inputs, take_rows

if TYPE_CHECKING:
    from modalign.data.transforms.base import Transform


class Encoder(nn.Module):
    """Base class of modality encoders (see module docstring).

    An encoder owns its preprocessing: :meth:`processor` returns the transform its inputs need, or
    None for the modality kind's default (from-scratch encoders). :meth:`layer_blocks` lists its layers
    in order for ``trainable: {last_n_blocks: N}``.
    """

    kind: str = ""
    output_dim: int = 0

    @classmethod
    def processor(cls, encoder_params: dict[str, Any], transform_params: dict[str, Any]) -> Transform | None:
        """The transform this encoder needs (None = the kind's default).

        Args:
            encoder_params: the config's ``encoder_params`` (e.g. the model's path).
            transform_params: the ``transform`` settings the user set explicitly; they override the
                model's own (e.g. ``max_length``, ``random_shift``).
        """
        return None

    def layer_blocks(self) -> list[nn.Module]:
        """Layers in input-to-output order; the last ones are unfrozen by ``last_n_blocks``."""
        raise ConfigError(f"encoder {type(self).__name__} does not list its blocks: use trainable all/none")


class ModalityTower(nn.Module):
    """encoder -> projection head (Linear, or MLP) -> L2 normalisation; absent rows stay zero.

    Args:
        encoder: the modality's encoder.
        embed_dim: the shared dimension D.
        head: "linear", "mlp" (Linear-GELU-Linear) or "none" (the encoder's F must equal D).

    Raises:
        ConfigError: ``head="none"`` with an encoder whose width is not ``embed_dim``.
    """

    def __init__(self, encoder: Encoder, embed_dim: int, head: str = "linear"):
        super().__init__()
        self.encoder = encoder
        self.embed_dim = embed_dim
        f = encoder.output_dim
        if head == "linear":
            self.head: nn.Module = nn.Linear(f, embed_dim)
        elif head == "mlp":
            self.head = nn.Sequential(nn.Linear(f, f), nn.GELU(), nn.Linear(f, embed_dim))
        elif head == "none":
            if f != embed_dim:
                raise ConfigError(
                    f"model.head=none needs model.embed_dim equal to the encoder's width {f}, got {embed_dim}"
                )
            self.head = nn.Identity()
        else:
            raise ConfigError(f"model.head must be linear, mlp or none, got {head!r}")

    def features(self, inputs: Inputs) -> torch.Tensor:
        """Unnormalised projected features of present rows only: (B', D).

        An input dict holding ``ENCODER_FEATURES`` (cached outputs of a frozen encoder) skips the
        encoder: only the projection head runs.
        """
        if isinstance(inputs, Mapping) and ENCODER_FEATURES in inputs:
            return self.head(inputs[ENCODER_FEATURES])
        return self.head(self.encoder(inputs))

    def forward(self, inputs: Inputs, present: torch.Tensor) -> torch.Tensor:
        """Embed a batch: (B, ...) inputs and (B,) mask -> (B, D) unit rows, zeros where absent."""
        return self.embed(inputs, present)[0]

    def embed(self, inputs: Inputs, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, D) unit rows and the (B, D) unnormalised features they come from; zeros where absent."""
        b = present.shape[0]
        if bool(present.all()):
            feats = self.features(inputs)
            return F.normalize(feats, dim=-1), feats
        out = torch.zeros(b, self.embed_dim, dtype=self.head_dtype(), device=present.device)
        idx = present.nonzero(as_tuple=True)[0]
        if idx.numel() == 0:
            return out, out
        feats = self.features(take_rows(inputs, idx))
        emb = F.normalize(feats, dim=-1)
        return out.index_copy(0, idx, emb.to(out.dtype)), out.index_copy(0, idx, feats.to(out.dtype))

    def head_dtype(self) -> torch.dtype:
        p = next(self.parameters(), None)
        return torch.float32 if p is None else p.dtype


def transformer_blocks(width: int, depth: int, heads: int, dropout: float) -> nn.TransformerEncoder:
    """``depth`` pre-norm transformer layers (GELU, MLP ratio 4, batch first)."""
    layer = nn.TransformerEncoderLayer(
        width, heads, 4 * width, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
