"""Registered pairwise contrastive objectives: clip, siglip, dcl, dclw, cwcl.

Each module holds only its learnable loss-side state (log scale, bias) and calls the pure function
of :mod:`modalign.objectives.functional` for every pair of modalities (all pairs, or each modality
against ``anchor``), averaging over the pairs that have enough jointly present rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from modalign.errors import ConfigError
from modalign.objectives.base import (
    LearnableScale,
    Objective,
    check_modalities,
    check_positive,
    embedding,
    log_scale,
    modality_pairs,
)
from modalign.objectives.functional import cwcl, dcl, info_nce, siglip
from modalign.objectives.tiled import ChunkSize, check_chunk_size
from modalign.registry import register
from modalign.types import EmbeddingBatch, LossOutput


@register("objective", "clip")
class ClipObjective(Objective):
    """Symmetric InfoNCE (CLIP loss) averaged over pairs of modalities, one learnable temperature.

    Optimises, for every pair (m, n) of modalities (all pairs, or every modality against
    ``anchor``), ``info_nce(e_m, e_n, s) = ½[CE(Z, arange) + CE(Zᵀ, arange)]`` with
    ``Z = s·e_m e_nᵀ``, on the rows where both are present (absent rows are removed from anchors
    and candidates), and averages over the pairs that have >= 2 such rows.

    Temperature: ``s = 1/τ = exp θ``; ``θ`` is stored, initialised to ``log(1/init_temperature)``
    (``log(1/0.07) = 2.659``) and clamped to ``[0, log 100]`` after every optimizer step
    (open_clip). Reference: Radford et al., *Learning Transferable Visual Models From Natural
    Language Supervision*, arXiv 2103.00020, Fig. 3.

    Prefer it as the default alignment objective. Siblings: ``siglip`` (no softmax over the batch,
    better at small batches and in distributed settings), ``dcl`` (small batches), ``cwcl`` (one
    frozen tower), ``symile`` (information shared only by >= 3 modalities).

    Tiling: ``chunk_size`` computes the exact same loss (values and gradients equal up to float
    summation order) in ``(chunk, chunk)`` tiles recomputed in backward, with memory linear in B.
    The default ``"auto"`` tiles a pair once it has ``tiled.AUTO_MIN_BATCH`` (1024) jointly present
    rows, where tiling is also the faster path on CPU (measured: about 0.5x the untiled time at
    B = 8192, D = 512; :func:`modalign.objectives.tiled.resolve_chunk`), unless
    ``label_smoothing`` is set; an int always tiles with that side; ``None`` never tiles.

    Example:
        >>> obj = ClipObjective(["image", "text"])
        >>> out = obj(EmbeddingBatch(emb, present))  # emb[name]: (B, D) unit rows
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str | None = None,
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        label_smoothing: float = 0.0,
        chunk_size: ChunkSize = "auto",
    ):
        super().__init__()
        names = check_modalities(modalities, 2, "clip")
        self.pairs = modality_pairs(names, anchor)
        init = log_scale(check_positive(init_temperature, "init_temperature", "clip"))
        self.scale = LearnableScale(init, learn=learn_temperature)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"objective 'clip': label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)
        self.chunk_size = check_chunk_size(chunk_size, "objective 'clip': chunk_size")

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        s = self.scale()
        return self.mean_over_pairs(
            batch,
            self.pairs,
            lambda a, b, mask: info_nce(
                a,
                b,
                s,
                present=mask,
                label_smoothing=self.label_smoothing,
                chunk_size=self.chunk_size,
            ),
            {"logit_scale": float(s.detach())},
        )

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.clamp_()


@register("objective", "siglip")
class SiglipObjective(Objective):
    """Sigmoid pairwise loss (SigLIP) averaged over pairs of modalities.

    Optimises ``(1/B) Σ_{i,j} softplus(−Y_ij Z_ij)`` with ``Z = s·e_m e_nᵀ + t`` and ``Y = 2I − J``
    (open_clip ``SigLipLoss`` reduction: a sum over pairs divided by B). Every pair of images and
    texts is an independent binary problem, so there is no softmax over the batch.

    Temperature: ``s = exp θ``, ``θ`` initialised to ``log(init_scale)`` (``log 10``), clamped to
    ``[0, log 100]`` after every step; bias ``t`` initialised to ``init_bias`` (−10), never clamped.
    Reference: Zhai et al., *Sigmoid Loss for Language Image Pre-Training*, arXiv 2303.15343.
    Masks: joint presence of each pair. Prefer it over ``clip`` for small or sharded batches.
    ``chunk_size`` gives the exact loss in tiles (memory ``O(B·chunk)``), with the same choices as
    ``clip``: ``"auto"`` (default) tiles from ``tiled.AUTO_MIN_BATCH`` (1024) jointly present rows,
    an int always tiles, ``None`` never does.

    Example:
        >>> obj = SiglipObjective(["image", "text"])
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str | None = None,
        init_scale: float = 10.0,
        init_bias: float = -10.0,
        learn: bool = True,
        chunk_size: ChunkSize = "auto",
    ):
        super().__init__()
        names = check_modalities(modalities, 2, "siglip")
        self.pairs = modality_pairs(names, anchor)
        init = math.log(check_positive(init_scale, "init_scale", "siglip"))
        self.scale = LearnableScale(init, learn=learn)
        self.bias = nn.Parameter(torch.tensor(float(init_bias)), requires_grad=learn)
        self.chunk_size = check_chunk_size(chunk_size, "objective 'siglip': chunk_size")

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        s = self.scale()
        return self.mean_over_pairs(
            batch,
            self.pairs,
            lambda a, b, mask: siglip(a, b, s, self.bias, present=mask, chunk_size=self.chunk_size),
            {"logit_scale": float(s.detach()), "logit_bias": float(self.bias.detach())},
            min_rows=1,
        )

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.clamp_()


@register("objective", "dcl")
class DclObjective(Objective):
    """Decoupled contrastive loss (DCL): InfoNCE without the positive in the denominator.

    Optimises ``½ mean_i[−Z_ii + LSE_{j≠i} Z_ij] + ½ mean_j[−Z_jj + LSE_{i≠j} Z_ij]`` with
    ``Z = e_m e_nᵀ/τ`` for every pair; ``intra_modal_negatives`` adds same-modality negatives to the
    one LSE (the paper's SimCLR form, = lightly 1.6 ``DCLLoss``). The loss can be negative.

    Temperature: fixed ``τ = temperature`` (0.1, lightly's default; not learnable, as in the
    paper). Reference: Yeh et al., *Decoupled Contrastive Learning*, arXiv 2110.06848, Eq. 6.
    Masks: joint presence of each pair. Prefer it over ``clip`` at small batch sizes, where the
    positive dominates InfoNCE's denominator. ``dclw`` reweights the positive term.
    """

    weighted = False

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str | None = None,
        temperature: float = 0.1,
        sigma: float = 0.5,
        intra_modal_negatives: bool = False,
    ):
        super().__init__()
        name = "dclw" if self.weighted else "dcl"
        self.pairs = modality_pairs(check_modalities(modalities, 2, name), anchor)
        self.temperature = check_positive(temperature, "temperature", name)
        self.sigma = check_positive(sigma, "sigma", name)
        self.intra_modal_negatives = bool(intra_modal_negatives)

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        return self.mean_over_pairs(
            batch,
            self.pairs,
            lambda a, b, mask: dcl(
                a,
                b,
                self.temperature,
                weighted=self.weighted,
                sigma=self.sigma,
                intra_modal_negatives=self.intra_modal_negatives,
                present=mask,
            ),
            {},
        )


@register("objective", "dclw")
class DclwObjective(DclObjective):
    """Weighted DCL (DCLW): DCL with the positive term weighted by ``w_i = 2 − B·softmax_i(⟨a_i,
    b_i⟩/σ)`` (detached, ``σ = 0.5``), so easy positives count less.

    Same temperature convention, masks and reference (arXiv 2110.06848, Sec. 3.3) as ``dcl``.
    """

    weighted = True


@register("objective", "cwcl")
class CwclObjective(Objective):
    """Continuously weighted contrastive loss (CWCL) for transfer from one frozen tower.

    For every other modality n: ``L = SCE(Z, W/rowsum W) + L_{n→frozen}`` (a sum of two directions)
    with ``Z = s·e_f e_nᵀ``, ``W_ij = ½ + ½⟨u_i, u_j⟩`` from the frozen tower's embeddings ``u``
    (``weights_from``, default the frozen modality itself; detached), and the reverse direction
    weighted the same way (``reverse="cwcl"``) or plain InfoNCE (``reverse="infonce"``); averaged
    over modalities n.

    Temperature: learnable ``s = exp θ`` as in ``clip`` (init ``log(1/0.07)``, clamp ``[0, log
    100]``). Reference: Srinivasa et al., *CWCL: Cross-Modal Transfer with Continuously Weighted
    Contrastive Loss*, arXiv 2309.14580. Masks: joint presence of the frozen and trained modality.
    Prefer it when one tower is pre-trained and frozen (LiT-style); with a trainable weight source
    it collapses.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        frozen: str | None = None,
        weights_from: str | None = None,
        reverse: str = "cwcl",
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
    ):
        super().__init__()
        names = check_modalities(modalities, 2, "cwcl")
        self.frozen = names[0] if frozen is None else frozen
        if self.frozen not in names:
            raise ConfigError(f"objective 'cwcl': frozen={self.frozen!r} is not one of {names}")
        if reverse not in ("cwcl", "infonce"):
            raise ConfigError(f"objective 'cwcl': reverse={reverse!r}; use 'cwcl' or 'infonce'")
        self.pairs = modality_pairs(names, self.frozen)
        self.weights_from = self.frozen if weights_from is None else weights_from
        self.reverse = reverse
        init = log_scale(check_positive(init_temperature, "init_temperature", "cwcl"))
        self.scale = LearnableScale(init, learn=learn_temperature)

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        s = self.scale()
        frozen, _ = embedding(batch, self.weights_from)
        return self.mean_over_pairs(
            batch,
            self.pairs,
            lambda a, b, mask: cwcl(a, b, frozen, s, reverse=self.reverse, present=mask),
            {"logit_scale": float(s.detach())},
        )

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.clamp_()


__all__ = [
    "ClipObjective",
    "CwclObjective",
    "DclObjective",
    "DclwObjective",
    "SiglipObjective",
]
