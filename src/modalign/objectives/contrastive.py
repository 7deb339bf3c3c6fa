"""Registered pairwise contrastive objectives."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modalign.objectives.base import LOG_SCALE_INIT, LearnableScale, Objective, modality_pairs
from modalign.objectives.functional import info_nce, pair_mask
from modalign.registry import register
from modalign.types import EmbeddingBatch, LossOutput


@register("objective", "clip")
class ClipObjective(Objective):
    """Symmetric InfoNCE averaged over pairs of modalities, with one learnable temperature.

    Optimises, for every pair (m, n) of modalities (all pairs, or every modality against
    ``anchor``), ``info_nce(e_m, e_n, s)`` on the rows where both are present (absent rows are
    removed from anchors and candidates), and averages over the pairs that have >= 2 such rows.
    Temperature: ``s = exp θ``, ``θ`` initialised to ``log(1/0.07)`` and clamped to ``[0, log 100]``
    after every optimizer step (open_clip). Reference: CLIP, arXiv 2103.00020.

    Example:
        >>> obj = ClipObjective(["image", "text"])
        >>> out = obj(EmbeddingBatch(emb, present))
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str | None = None,
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        self.pairs = modality_pairs(list(modalities), anchor)
        init = LOG_SCALE_INIT if init_temperature == 0.07 else float(torch.log(torch.tensor(1.0 / init_temperature)))
        self.scale = LearnableScale(init)
        self.scale.log_scale.requires_grad_(learn_temperature)
        self.label_smoothing = label_smoothing

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        s = self.scale()
        losses = []
        metrics: dict[str, float] = {"logit_scale": float(s.detach())}
        for m, n in self.pairs:
            mask = pair_mask(batch.present.get(m), batch.present.get(n))
            if mask is not None and int(mask.sum()) < 2:
                continue
            loss = info_nce(
                batch.emb[m], batch.emb[n], s, present=mask, label_smoothing=self.label_smoothing
            )
            metrics[f"{m}-{n}"] = float(loss.detach())
            losses.append(loss)
        if not losses:
            zero = sum(e.sum() for e in batch.emb.values()) * 0.0 + s * 0.0
            return LossOutput(zero, metrics)
        return LossOutput(torch.stack(losses).mean(), metrics)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.clamp_()
