"""Registered geometry terms: uniformity, alignment, cross_uniformity, CUA and CUAXU."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modalign.objectives.base import (
    LearnableScale,
    Objective,
    check_modalities,
    check_positive,
    embedding,
    log_scale,
    modality_pairs,
)
from modalign.objectives.functional import alignment, cross_uniformity, info_nce, uniformity
from modalign.registry import register
from modalign.types import EmbeddingBatch, LossOutput


@register("objective", "uniformity")
class UniformityObjective(Objective):
    """Uniformity ``log mean_{i<j} exp(−t‖x_i − x_j‖²)`` averaged over modalities.

    Lower means embeddings spread more evenly on the sphere. No temperature (``t`` = 2). Reference:
    Wang & Isola, *Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere*, arXiv 2005.10242, Eq. 5. Masks: each modality's own presence.
    Use as a small-weight regulariser next to ``clip`` (e.g. weight 0.1); ``cua`` bundles it.
    """

    def __init__(self, modalities: Sequence[str], *, t: float = 2.0):
        super().__init__()
        self.modalities = check_modalities(modalities, 1, "uniformity")
        self.t = check_positive(t, "t", "uniformity")

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        terms, metrics = [], {}
        for name in self.modalities:
            x, p = embedding(batch, name)
            if p is not None and int(p.sum()) < 2:
                continue
            u = uniformity(x, self.t, present=p)
            metrics[name] = float(u.detach())
            terms.append(u)
        if not terms:
            return LossOutput(self.zero(batch), metrics)
        return LossOutput(torch.stack(terms).mean(), metrics)


@register("objective", "alignment")
class AlignmentObjective(Objective):
    """Alignment ``mean_i ‖a_i − b_i‖^α`` (α = 2) averaged over pairs of modalities.

    Pulls paired embeddings together; alone it collapses, so combine it with a contrastive or
    uniformity term. Reference: Wang & Isola, arXiv 2005.10242, Eq. 4. Masks: joint presence.
    """

    def __init__(self, modalities: Sequence[str], *, anchor: str | None = None, alpha: float = 2.0):
        super().__init__()
        self.pairs = modality_pairs(check_modalities(modalities, 2, "alignment"), anchor)
        self.alpha = check_positive(alpha, "alpha", "alignment")

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        return self.mean_over_pairs(
            batch,
            self.pairs,
            lambda a, b, m: alignment(a, b, self.alpha, present=m),
            {},
            min_rows=1,
        )


@register("objective", "cross_uniformity")
class CrossUniformityObjective(Objective):
    """Cross-modal uniformity ``log mean_{i≠j} exp(−t‖a_i − b_j‖²)`` averaged over pairs.

    Spreads each modality against the *other* modality's non-matching samples, which closes the
    contrastive gap. Reference: Fahim et al., *It's Not a Modality Gap: Characterizing and
    Addressing the Contrastive Gap*, arXiv 2405.18570. Masks: joint presence.
    """

    def __init__(self, modalities: Sequence[str], *, anchor: str | None = None, t: float = 2.0):
        super().__init__()
        self.pairs = modality_pairs(check_modalities(modalities, 2, "cross_uniformity"), anchor)
        self.t = check_positive(t, "t", "cross_uniformity")

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        return self.mean_over_pairs(
            batch, self.pairs, lambda a, b, m: cross_uniformity(a, b, self.t, present=m), {}
        )


@register("objective", "cua")
class CuaObjective(Objective):
    """CUA = CLIP + uniformity + alignment (all weights 1), per pair, averaged over pairs.

    Per pair: ``info_nce(a, b, s) + ½U(a) + ½U(b) + mean‖a_i − b_i‖²`` (uniformity with t = 2 on
    the pair's jointly present rows). Temperature: ``s = 1/temperature``, fixed ``τ = 0.01`` as in
    the paper unless ``learn_temperature`` (then stored as ``θ = log s``, clamped to ``[0, log
    100]``). Reference: Fahim et al., *It's Not a Modality Gap*, arXiv 2405.18570, Sec. 5.
    Masks: joint presence. Prefer it over ``clip`` to reduce the modality (contrastive) gap;
    ``cuaxu`` adds cross-modal uniformity.
    """

    cross = False

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str | None = None,
        temperature: float = 0.01,
        learn_temperature: bool = False,
        t: float = 2.0,
    ):
        super().__init__()
        name = "cuaxu" if self.cross else "cua"
        self.pairs = modality_pairs(check_modalities(modalities, 2, name), anchor)
        init = log_scale(check_positive(temperature, "temperature", name))
        self.scale = LearnableScale(init, learn=learn_temperature)
        self.t = check_positive(t, "t", name)

    def _pair(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        loss = info_nce(a, b, self.scale(), present=mask)
        loss = loss + 0.5 * uniformity(a, self.t, present=mask) + 0.5 * uniformity(b, self.t, present=mask)
        loss = loss + alignment(a, b, 2.0, present=mask)
        if self.cross:
            loss = loss + cross_uniformity(a, b, self.t, present=mask)
        return loss

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        return self.mean_over_pairs(batch, self.pairs, self._pair, {})

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.clamp_()


@register("objective", "cuaxu")
class CuaxuObjective(CuaObjective):
    """CUAXU = CUA + cross-modal uniformity (all weights 1); see ``cua`` (arXiv 2405.18570)."""

    cross = True
