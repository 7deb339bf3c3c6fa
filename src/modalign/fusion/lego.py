"""MM-Lego: modality blocks with a shared frequency-domain latent, mergeable without fine-tuning.

Reference: "MM-Lego: Modular Biomedical Multimodal Models with Minimal Fine-Tuning",
arXiv 2405.19950 (ICLR 2025), §3. Each modality has a :class:`LegoBlock`: a learned latent
``l`` (l_c, l_d) refined for ``depth`` rounds by cross-attention to the modality's tokens, in the
frequency domain (FFT over the l_c axis). Blocks produce complex latents of one shape, so they can
be combined:

* ``mode="merge"`` (LegoMerge): each present modality's block runs from its own latent and the
  complex latents are combined (``sum``/``mean``/``product`` over *present* modalities); blocks
  trained separately can be put together with :meth:`LegoFusion.from_blocks` and their heads
  merged with :func:`merge_heads_linear` / :func:`merge_heads_slerp`, without fine-tuning.
* ``mode="stack"`` (LegoFuse, stack variant): one latent passes through the blocks in order; an
  absent modality's block is skipped for that sample. Meant for brief fine-tuning after merging.

The fused output is ``LayerNorm(mean over l_c of Re(latent))`` (B, l_d). A sample with no
modality gets the merge identity (zero latent for sum/mean) or the initial latent (stack), i.e. a
learned prior. Compat switches reproduce the original code: ``dead_attention=True`` (the modality
layer's self-attention output is overwritten) and ``reference_alpha=True`` in head merging.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modalign.errors import ConfigError
from modalign.fusion.base import FusionModule, FusionOutput
from modalign.registry import register


class _FeedForward(nn.Module):
    """Linear(d, 8d) -> halves (u, g) -> u * SELU(g) -> Linear(4d, d) -> Dropout."""

    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.inp = nn.Linear(d, 8 * d)
        self.out = nn.Linear(4 * d, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, g = self.inp(self.norm(x)).chunk(2, dim=-1)
        return self.drop(self.out(u * F.selu(g)))


class _CrossAttention(nn.Module):
    """Pre-norm cross-attention with the extra softmax temperature 0.5, LeakyReLU(0.01) output."""

    def __init__(self, q_dim: int, kv_dim: int, heads: int, head_dim: int, temperature: float = 0.5):
        super().__init__()
        self.heads, self.head_dim, self.temperature = heads, head_dim, temperature
        self.q_norm, self.kv_norm = nn.LayerNorm(q_dim), nn.LayerNorm(kv_dim)
        self.q = nn.Linear(q_dim, heads * head_dim, bias=False)
        self.kv = nn.Linear(kv_dim, 2 * heads * head_dim, bias=False)
        self.out = nn.Linear(heads * head_dim, q_dim)

    def forward(self, q: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
        b, n, _ = q.shape
        h, dh = self.heads, self.head_dim
        qq = self.q(self.q_norm(q)).view(b, n, h, dh).transpose(1, 2)  # (B, h, n, dh)
        k, v = self.kv(self.kv_norm(ctx)).chunk(2, dim=-1)
        k = k.view(b, -1, h, dh).transpose(1, 2)  # (B, h, T, dh)
        v = v.view(b, -1, h, dh).transpose(1, 2)
        att = torch.softmax(qq @ k.transpose(-1, -2) / math.sqrt(dh) / self.temperature, dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, n, h * dh)  # (B, n, h*dh)
        return F.leaky_relu(self.out(o), 0.01)


class _SelfBlock(nn.Module):
    """The built-in modality layer over input tokens: attention then feed-forward, residual."""

    def __init__(self, d: int, heads: int, head_dim: int, dropout: float, dead_attention: bool):
        super().__init__()
        self.attn = _CrossAttention(d, d, heads, head_dim, temperature=1.0)
        self.ff = _FeedForward(d, dropout)
        self.dead_attention = dead_attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dead_attention:
            # Original code: FF is applied to the layer's input, discarding the attention output.
            return self.ff(x) + x
        x = self.attn(x, x) + x
        return self.ff(x) + x


class LegoBlock(nn.Module):
    """One modality's block: (B, F) features -> complex latent (B, l_c, l_d).

    Args:
        in_dim: feature width F; embedded as ``tokens`` tokens of width ``token_dim``.
        latent_channels: l_c.
        latent_dim: l_d.
        depth: refinement rounds.
        heads: attention heads.
        head_dim: width per head.
        tokens: number of input tokens the features are embedded into.
        token_dim: token width.
        dropout: feed-forward dropout.
        weight_sharing: share attention/FF weights across rounds (the flag's plain meaning).
        dead_attention: reproduce the original modality layer whose attention output is discarded.
    """

    def __init__(
        self,
        in_dim: int,
        latent_channels: int = 16,
        latent_dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        head_dim: int = 16,
        tokens: int = 4,
        token_dim: int = 32,
        dropout: float = 0.0,
        weight_sharing: bool = False,
        dead_attention: bool = False,
    ):
        super().__init__()
        self.depth, self.tokens, self.token_dim = depth, tokens, token_dim
        self.latent = nn.Parameter(torch.randn(latent_channels, latent_dim))
        self.embed = nn.Linear(in_dim, tokens * token_dim)
        n = 1 if weight_sharing else depth
        self.modality = nn.ModuleList(
            [_SelfBlock(token_dim, heads, head_dim, dropout, dead_attention) for _ in range(n)]
        )
        self.cross = nn.ModuleList(
            [_CrossAttention(latent_dim, token_dim, heads, head_dim) for _ in range(n)]
        )
        self.ff = nn.ModuleList([_FeedForward(latent_dim, dropout) for _ in range(n)])

    def forward(self, x: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        """Refine a latent with the modality's tokens.

        Args:
            x: (B, F) features.
            init: optional (B, l_c, l_d) real starting latent (stacking); never modified.

        Returns:
            (B, l_c, l_d) complex latent in the frequency domain.
        """
        b = x.shape[0]
        tok = self.embed(x).view(b, self.tokens, self.token_dim)  # (B, T, d_tok)
        lat = self.latent.expand(b, -1, -1) if init is None else init  # (B, l_c, l_d)
        l_im = torch.zeros_like(lat)
        for t in range(self.depth):
            j = min(t, len(self.cross) - 1)
            tok = self.modality[j](tok)
            lat = F.normalize(lat, dim=1)
            spec = torch.fft.fft(lat, dim=1)
            l_re, l_im = spec.real, spec.imag
            ctx = torch.fft.fft(tok, dim=1).real  # (B, T, d_tok)
            lat = self.cross[j](l_re, ctx) + l_re
            lat = self.ff[j](lat) + lat
            if t < self.depth - 1:
                lat = torch.fft.ifft(torch.complex(lat, l_im), dim=1).real
        return torch.complex(lat, l_im)


def merge_latents(latents: torch.Tensor, mask: torch.Tensor, how: str = "sum") -> torch.Tensor:
    """Combine complex latents of present blocks.

    Args:
        latents: (M, B, l_c, l_d) complex.
        mask: (M, B) bool, True where the block's modality is present.
        how: ``sum``, ``mean`` (over present blocks) or ``product``.

    Returns:
        (B, l_c, l_d) complex; all-absent rows get 0 (sum, mean) or 1 (product).
    """
    m = mask[:, :, None, None]
    if how == "sum":
        return torch.where(m, latents, torch.zeros_like(latents)).sum(0)
    if how == "mean":
        cnt = mask.sum(0).clamp_min(1).to(latents.real.dtype)[:, None, None]
        return torch.where(m, latents, torch.zeros_like(latents)).sum(0) / cnt
    if how == "product":
        return torch.where(m, latents, torch.ones_like(latents)).prod(0)
    raise ConfigError(f"lego merge must be 'sum', 'mean' or 'product', got {how!r}")


def merge_heads_linear(w1: torch.Tensor, w2: torch.Tensor, alpha: float = 0.8) -> torch.Tensor:
    """``alpha * w1 + (1 - alpha) * w2``: alpha is the weight of head 1."""
    return alpha * w1 + (1 - alpha) * w2


def merge_heads_slerp(
    w1: torch.Tensor, w2: torch.Tensor, alpha: float = 0.8, reference_alpha: bool = False
) -> torch.Tensor:
    """Whole-tensor spherical interpolation of two head weights.

    With unit directions ``u_k = w_k/‖w_k‖``, ``c = u1·u2`` (clamped to [-1, 1]),
    ``θ = a · arccos c`` and ``r = normalise(u2 - c u1)``, the result is
    ``((1-a)‖w1‖ + a‖w2‖) (u1 cos θ + r sin θ)``: the direction moves along the great circle and
    the norm linearly, so both endpoints are exact (the original code skips normalising w1 and
    does not preserve norms). modalign's ``alpha`` is the weight of head 1, as in the linear
    merge, so ``a = 1 - alpha`` (alpha = 1 gives w1); ``reference_alpha=True`` uses ``a = alpha``
    (the original moves alpha towards head 2). (Anti)parallel tensors fall back to the linear
    merge.
    """
    a = alpha if reference_alpha else 1.0 - alpha
    v1, v2 = w1.flatten(), w2.flatten()
    n1, n2 = v1.norm(), v2.norm()
    u1, u2 = v1 / n1.clamp_min(1e-12), v2 / n2.clamp_min(1e-12)
    c = torch.clamp(torch.dot(u1, u2), -1.0, 1.0)
    r = u2 - c * u1
    if float(r.norm()) < 1e-6:
        return merge_heads_linear(w1, w2, 1.0 - a)
    theta = a * torch.arccos(c)
    direction = u1 * torch.cos(theta) + F.normalize(r, dim=0) * torch.sin(theta)
    return ((1 - a) * n1 + a * n2) * direction.view_as(w1)


@register("fusion", "lego")
class LegoFusion(FusionModule):
    """MM-Lego fusion over per-modality blocks (see module docstring).

    Args:
        dims: modality name -> feature width F_m.
        mode: ``merge`` (parallel blocks, combined latents) or ``stack`` (sequential).
        merge: latent combination for ``merge`` mode: ``sum`` (default), ``mean`` or ``product``.
        order: block order for ``stack`` mode; None uses ``dims`` order.
        latent_channels, latent_dim, depth, heads, head_dim, tokens, token_dim, dropout,
        weight_sharing, dead_attention: passed to every :class:`LegoBlock`.

    Example:
        >>> f = LegoFusion({"a": 3, "b": 2}, latent_channels=4, latent_dim=8)
        >>> f({"a": torch.randn(2, 3)}, {}).fused.shape
        torch.Size([2, 8])
    """

    def __init__(
        self,
        dims: Mapping[str, int],
        mode: str = "merge",
        merge: str = "sum",
        order: Sequence[str] | None = None,
        latent_channels: int = 16,
        latent_dim: int = 32,
        depth: int = 2,
        heads: int = 4,
        head_dim: int = 16,
        tokens: int = 4,
        token_dim: int = 32,
        dropout: float = 0.0,
        weight_sharing: bool = False,
        dead_attention: bool = False,
    ):
        super().__init__(dims)
        if mode not in ("merge", "stack"):
            raise ConfigError(f"lego mode must be 'merge' or 'stack', got {mode!r}")
        if merge not in ("sum", "mean", "product"):
            raise ConfigError(f"lego merge must be 'sum', 'mean' or 'product', got {merge!r}")
        if order is not None and sorted(order) != sorted(self.names):
            raise ConfigError(f"lego order {list(order)} must list every modality {list(self.names)} once")
        self.mode, self.merge = mode, merge
        self.order = tuple(order) if order is not None else self.names
        self.block_kwargs: dict[str, Any] = dict(
            latent_channels=latent_channels,
            latent_dim=latent_dim,
            depth=depth,
            heads=heads,
            head_dim=head_dim,
            tokens=tokens,
            token_dim=token_dim,
            dropout=dropout,
            weight_sharing=weight_sharing,
            dead_attention=dead_attention,
        )
        self.blocks = nn.ModuleDict({m: LegoBlock(d, **self.block_kwargs) for m, d in self.dims.items()})
        self.init_latent = nn.Parameter(torch.randn(latent_channels, latent_dim))  # stack mode
        self.norm = nn.LayerNorm(latent_dim)
        self.output_dim = latent_dim

    def config(self) -> dict:
        return {
            "dims": self.dims,
            "mode": self.mode,
            "merge": self.merge,
            "order": list(self.order),
            **self.block_kwargs,
        }

    @classmethod
    def from_blocks(cls, blocks: Mapping[str, tuple[int, LegoBlock]], **kwargs) -> LegoFusion:
        """LegoMerge: assemble independently trained blocks (name -> (F_m, block)) without training.

        The blocks' weights are copied (the given blocks are not modified); ``kwargs`` must match
        the blocks' hyper-parameters.
        """
        fusion = cls({m: d for m, (d, _) in blocks.items()}, **kwargs)
        for m, (_, blk) in blocks.items():
            fusion.blocks[m].load_state_dict(blk.state_dict())
        return fusion

    def forward(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
    ) -> FusionOutput:
        """Fuse ``features`` where ``present`` (see :meth:`FusionModule.resolve`): ``fused`` (B, l_d)."""
        clean, mask, b = self.resolve(features, present)
        if self.mode == "merge":
            lats = torch.stack([self.blocks[m](clean[m]) for m in self.names])  # (M, B, l_c, l_d)
            msk = torch.stack([mask[m] for m in self.names])  # (M, B)
            latent = merge_latents(lats, msk, self.merge)
        else:
            spatial = self.init_latent.expand(b, -1, -1)
            latent = torch.fft.fft(F.normalize(spatial, dim=1), dim=1)
            for m in self.order:
                if not bool(mask[m].any()):
                    continue
                new = self.blocks[m](clean[m], init=spatial)
                keep = mask[m][:, None, None]
                latent = torch.where(keep, new, latent)
                spatial = torch.where(keep, torch.fft.ifft(new, dim=1).real, spatial)
        fused = self.norm(latent.real.mean(dim=1))  # (B, l_d)
        return FusionOutput(fused=fused, regularizer=fused.new_zeros(()))
