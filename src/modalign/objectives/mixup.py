"""Registered mixup objectives: m3co (M3CoL, with its Soft-CLIP phase), soft_clip, m2mix.

Randomness (permutations, Beta draws) comes from torch's global RNG, so a seeded run is
reproducible and GradCache replays see the same draws (the loss runs once per step).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from modalign.errors import ConfigError
from modalign.objectives.base import (
    Objective,
    check_modalities,
    check_positive,
    embedding,
    modality_pairs,
)
from modalign.objectives.functional import m2mix, m3co, pair_mask, soft_clip
from modalign.registry import register
from modalign.types import EmbeddingBatch, LossOutput


def _directions(names: list[str]) -> list[tuple[str, str]]:
    # M3CoL pairing: image–text uses both directions; three or more omics go round a cycle.
    if len(names) == 2:
        return [(names[1], names[0]), (names[0], names[1])]
    return list(zip(names, names[1:] + names[:1], strict=True))


class _Stepped(Objective):
    """Keeps an optimizer-step counter (advanced by ``clamp_``) for schedules."""

    step: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def clamp_(self) -> None:
        self.step += 1


def _sum_directions(
    obj: Objective,
    batch: EmbeddingBatch,
    directions: Sequence[tuple[str, str]],
    fn,  # (a, b, mask) -> Tensor
    metrics: dict[str, float],
    anchors: dict[str, torch.Tensor] | None = None,
) -> LossOutput:
    """Sum of ``fn(a, b, joint mask)`` over directions; ``anchors`` replaces the a side's rows."""
    total = None
    for m, n in directions:
        a, pa = embedding(batch, m)
        if anchors is not None:
            a = anchors[m]
        b, pb = embedding(batch, n)
        mask = pair_mask(pa, pb)
        if mask is not None and int(mask.sum()) < 2:
            continue
        loss = fn(a, b, mask)
        metrics[f"{m}->{n}"] = float(loss.detach())
        total = loss if total is None else total + loss
    return LossOutput(obj.zero(batch) if total is None else total, metrics)


@register("objective", "m3co")
class M3CoObjective(_Stepped):
    """M3Co mixup contrastive loss, then Soft-CLIP (the M3CoL contrastive schedule).

    For each direction a → b (both directions for two modalities, a cycle for three or more),
    mixes ``ã_i = β_i a_i + (1−β_i) a_{π(i)}`` of the **unnormalised** tower outputs of a, as the
    reference code does (``EmbeddingBatch.features``, which ``MultimodalModel.forward`` fills; a
    batch without them, or ``mix="embedding"``, mixes the unit embeddings) with ``π`` a random
    permutation, ``β_i ~
    Beta(beta, beta)`` for a random half of the rows (``select_prob``) and 1 elsewhere, and trains
    ``normalise(ã) bᵀ/τ`` towards targets ``β_i`` on i and ``1−β_i`` on ``π(i)`` (added, rows sum to
    1; ``target_mode="assign"`` reproduces the reference's overwrite bug), symmetric SCE; the
    directions are **summed**. After ``mixup_steps`` optimizer steps it switches to Soft-CLIP;
    ``None`` keeps M3Co. ``mixup_fraction`` sets it as a fraction of ``total_steps`` instead (the
    paper: a third of training): M3Co on the steps ``s`` with ``s / total_steps < mixup_fraction``.
    The config builder passes ``total_steps = trainer.max_steps``.

    Temperature: fixed ``τ = temperature`` (0.1) and ``soft_temperature`` (0.125), not learnable.
    Reference: Kumar et al., *Multimodal Mixup Contrastive Learning for Multimodal Classification*
    (M3CoL), arXiv 2409.17777. Masks: joint presence per direction; permutation over present rows.
    Prefer it with small, shared-label datasets (e.g. omics) where one-to-one pairs are too strict.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        beta: float = 0.15,
        select_prob: float = 0.5,
        temperature: float = 0.1,
        soft_temperature: float = 0.125,
        mixup_steps: int | None = None,
        mixup_fraction: float | None = None,
        total_steps: int | None = None,
        target_mode: str = "add",
        mix: str = "features",
    ):
        super().__init__()
        self.directions = _directions(check_modalities(modalities, 2, "m3co"))
        self.beta = check_positive(beta, "beta", "m3co")
        if not 0.0 <= select_prob <= 1.0:
            raise ConfigError(f"objective 'm3co': select_prob must be in [0, 1], got {select_prob}")
        if target_mode not in ("add", "assign"):
            raise ConfigError(f"objective 'm3co': target_mode={target_mode!r}; use 'add' or 'assign'")
        self.select_prob = float(select_prob)
        self.temperature = check_positive(temperature, "temperature", "m3co")
        self.soft_temperature = check_positive(soft_temperature, "soft_temperature", "m3co")
        if mixup_fraction is not None:
            if mixup_steps is not None:
                raise ConfigError("objective 'm3co': give mixup_steps or mixup_fraction, not both")
            if not 0.0 <= mixup_fraction <= 1.0 or total_steps is None or total_steps < 1:
                raise ConfigError(
                    f"objective 'm3co': mixup_fraction={mixup_fraction} needs a value in [0, 1] and "
                    f"total_steps >= 1 (got {total_steps})"
                )
            mixup_steps = sum(1 for s in range(total_steps) if s / total_steps < mixup_fraction)
        self.mixup_steps = mixup_steps
        self.target_mode = target_mode
        if mix not in ("features", "embedding"):
            raise ConfigError(f"objective 'm3co': mix={mix!r}; use 'features' or 'embedding'")
        self.mix = mix

    def _mix_loss(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        n = a.shape[0] if mask is None else int(mask.sum())
        # Reference RNG order: permutation, Beta draws, selection.
        perm = torch.randperm(n, device=a.device)
        betas = torch.distributions.Beta(self.beta, self.beta).sample((n,)).to(a.device, a.dtype)
        selected = torch.rand(n, device=a.device) < self.select_prob
        betas = torch.where(selected, betas, torch.ones_like(betas))
        return m3co(
            a,
            b,
            perm=perm,
            betas=betas,
            temperature=self.temperature,
            target_mode=self.target_mode,
            present=mask,
        )

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        mixing = self.mixup_steps is None or int(self.step) < self.mixup_steps
        if mixing:
            # The side that is mixed: the unnormalised rows when the batch carries them.
            anchors = batch.features if self.mix == "features" else None
            return _sum_directions(self, batch, self.directions, self._mix_loss, {"mixup": 1.0}, anchors)
        return _sum_directions(
            self,
            batch,
            self.directions,
            lambda a, b, mask: soft_clip(a, b, self.soft_temperature, present=mask),
            {"mixup": 0.0},
        )


@register("objective", "soft_clip")
class SoftClipObjective(Objective):
    """Soft-CLIP: contrastive loss towards the candidate side's own similarity distribution.

    For each direction a → b: ``½[SCE(a bᵀ/τ, Q) + SCE(b aᵀ/τ, Q)]`` with ``Q = rowsoftmax(b bᵀ/τ)``
    (detached); directions as in ``m3co``, summed. Temperature: fixed ``τ`` (0.125). Reference:
    Scotti et al., *Reconstructing the Mind's Eye* (MindEye), arXiv 2305.18274, Sec. 2.3; the
    second phase of M3CoL. Masks: joint presence per direction. Prefer it when samples that look
    alike in one modality should not be pushed apart in the other.
    """

    def __init__(self, modalities: Sequence[str], *, temperature: float = 0.125):
        super().__init__()
        self.directions = _directions(check_modalities(modalities, 2, "soft_clip"))
        self.temperature = check_positive(temperature, "temperature", "soft_clip")

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        return _sum_directions(
            self,
            batch,
            self.directions,
            lambda a, b, mask: soft_clip(a, b, self.temperature, present=mask),
            {},
        )


@register("objective", "m2mix")
class M2MixObjective(_Stepped):
    """m²-Mix: CLIP loss plus hard negatives made by geodesic mixup of each pair.

    For every pair (m, n): ``info_nce(a, b, 1/τ) + w·g·[CE(A/τ₂, i) + CE(B′/τ₂, i)]`` where
    ``A = a mᵀ``, ``B′ = b mᵀ`` (diagonals replaced by ``⟨a_i, b_i⟩``) and ``m_j = slerp_λ(a_j,
    b_j)`` with one ``λ ~ Beta(beta, beta)`` per batch; ``g = 1/(epoch+1)`` when ``steps_per_epoch``
    is given (epoch = optimizer steps // steps_per_epoch), else 1. Averaged over pairs.

    Temperature: fixed ``τ = temperature`` (0.01) for the CLIP term and ``τ₂ = mix_temperature``
    (0.07) for the mix term; not learnable (paper). Reference: Oh et al., *Geodesic Multi-Modal
    Mixup for Robust Fine-Tuning*, arXiv 2203.03897. Masks: joint presence per pair. Prefer it when
    fine-tuning a pre-trained CLIP whose modalities sit in separate regions (poor uniformity).
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str | None = None,
        temperature: float = 0.01,
        mix_temperature: float = 0.07,
        beta: float = 0.5,
        mix_weight: float = 0.01,
        steps_per_epoch: int | None = None,
    ):
        super().__init__()
        self.pairs = modality_pairs(check_modalities(modalities, 2, "m2mix"), anchor)
        self.temperature = check_positive(temperature, "temperature", "m2mix")
        self.mix_temperature = check_positive(mix_temperature, "mix_temperature", "m2mix")
        self.beta = check_positive(beta, "beta", "m2mix")
        if mix_weight < 0:
            raise ConfigError(f"objective 'm2mix': mix_weight must be >= 0, got {mix_weight}")
        self.mix_weight = float(mix_weight)
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ConfigError(f"objective 'm2mix': steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.steps_per_epoch = steps_per_epoch

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        lam = float(torch.distributions.Beta(self.beta, self.beta).sample())
        weight = self.mix_weight
        if self.steps_per_epoch is not None:
            weight = weight / (int(self.step) // self.steps_per_epoch + 1)
        return self.mean_over_pairs(
            batch,
            self.pairs,
            lambda a, b, mask: m2mix(
                a,
                b,
                lam,
                self.temperature,
                self.mix_temperature,
                mix_weight=weight,
                present=mask,
            ),
            {"lambda": lam, "mix_weight": weight},
        )


__all__ = ["M2MixObjective", "M3CoObjective", "SoftClipObjective"]
