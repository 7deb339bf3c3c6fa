"""Registered distillation objectives: TinyCLIP affinity mimicking, CLIP-KD feature distillation
and ALBEF momentum ITC.

Objectives never own encoders: the teacher's and the momentum model's embeddings arrive in the
:class:`EmbeddingBatch` under suffixed names (``"image.teacher"``, ``"image.momentum"``), produced
by whoever runs those models (see :func:`ema_update_` for the momentum copy).
"""

from __future__ import annotations

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
from modalign.objectives.functional import (
    affinity_distillation,
    feature_distillation,
    info_nce,
    momentum_itc,
    pair_mask,
)
from modalign.registry import register
from modalign.types import EmbeddingBatch, LossOutput


@torch.no_grad()
def ema_update_(target: nn.Module, source: nn.Module, decay: float) -> None:
    """``θ_target ← decay·θ_target + (1−decay)·θ_source`` for every parameter; buffers copied.

    ALBEF updates the momentum model **before** computing momentum features (decay 0.995).

    Args:
        target: the momentum copy (same architecture as ``source``).
        source: the online model.
        decay: EMA decay in ``[0, 1]``.

    Raises:
        ConfigError: ``decay`` outside ``[0, 1]``.
    """
    if not 0.0 <= decay <= 1.0:
        raise ConfigError(f"ema decay must be in [0, 1], got {decay}")
    for p_t, p_s in zip(target.parameters(), source.parameters(), strict=True):
        p_t.mul_(decay).add_(p_s.detach(), alpha=1.0 - decay)
    for b_t, b_s in zip(target.buffers(), source.buffers(), strict=True):
        b_t.copy_(b_s)


@register("objective", "affinity_distillation")
class AffinityDistillationObjective(Objective):
    """TinyCLIP affinity mimicking: the student's cross-modal softmax mimics the teacher's.

    For every pair (m, n): ``α·½[SCE(A^S, rowsoftmax(A^T)) + SCE(A^Sᵀ, rowsoftmax(A^Tᵀ))] +
    (1−α)·info_nce(e_m, e_n, s_S)`` with ``A^S = s_S e_m e_nᵀ`` and ``A^T = s_T t_m t_nᵀ`` from the
    teacher embeddings ``t = emb[name + teacher_suffix]`` (detached; their dim may differ).
    ``α = 1`` (default) is pure distillation. Averaged over pairs.

    Temperature: student ``s_S = exp θ``, ``θ`` initialised to ``log(1/init_temperature)``
    (TinyCLIP recipes fix 50: ``init_temperature = 0.02``, ``learn_temperature = False``), clamped
    to ``[0, log 100]``; teacher scale ``teacher_scale`` (fixed). Reference: Wu et al., *TinyCLIP:
    CLIP Distillation via Affinity Mimicking and Weight Inheritance*, arXiv 2309.12314, Eq. 2-4.
    Masks: joint presence of the student pair. Prefer it to shrink a trained model.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        anchor: str | None = None,
        teacher_suffix: str = ".teacher",
        teacher_scale: float = 50.0,
        init_temperature: float = 0.02,
        learn_temperature: bool = False,
        alpha: float = 1.0,
    ):
        super().__init__()
        self.pairs = modality_pairs(check_modalities(modalities, 2, "affinity_distillation"), anchor)
        self.teacher_suffix = teacher_suffix
        self.teacher_scale = check_positive(teacher_scale, "teacher_scale", "affinity_distillation")
        init = log_scale(check_positive(init_temperature, "init_temperature", "affinity_distillation"))
        self.scale = LearnableScale(init, learn=learn_temperature)
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"objective 'affinity_distillation': alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        s = self.scale()
        losses, metrics = [], {"logit_scale": float(s.detach())}
        for m, n in self.pairs:
            a, pa = embedding(batch, m)
            b, pb = embedding(batch, n)
            t_a, _ = embedding(batch, m + self.teacher_suffix)
            t_b, _ = embedding(batch, n + self.teacher_suffix)
            mask = pair_mask(pa, pb)
            if mask is not None and int(mask.sum()) < 2:
                continue
            loss = self.alpha * affinity_distillation(a, b, t_a, t_b, s, self.teacher_scale, present=mask)
            if self.alpha < 1.0:
                loss = loss + (1.0 - self.alpha) * info_nce(a, b, s, present=mask)
            metrics[f"{m}-{n}"] = float(loss.detach())
            losses.append(loss)
        if not losses:
            return LossOutput(self.zero(batch), metrics)
        return LossOutput(torch.stack(losses).mean(), metrics)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.clamp_()


@register("objective", "feature_distillation")
class FeatureDistillationObjective(Objective):
    """CLIP-KD feature distillation: each student embedding regresses onto the teacher's.

    For every modality m: ``(1/B) Σ_i ½‖e_m,i − t_m,i‖²`` (``= 1 − cos`` for unit rows) with the
    teacher embeddings ``t_m = emb[m + teacher_suffix]`` (detached), averaged over modalities. No
    temperature and no learnable state. Reference: Yang et al., *CLIP-KD: An Empirical Study of CLIP
    Model Distillation*, arXiv 2307.12732 (feature distillation, "FD"). Masks: the student's
    presence of each modality. Student and teacher must share the embedding dim (``model.embed_dim``
    equal to the teacher's). Where :class:`AffinityDistillationObjective` only matches the B×B
    similarity distributions (any dims), this pins each row to the teacher's space, so the student's
    image and text towers each inherit the teacher's alignment; use both next to ``clip``.

    Example:
        ``objectives: [{name: clip}, {name: feature_distillation, weight: 1.0}]`` with
        ``model.teacher`` set.
    """

    def __init__(self, modalities: Sequence[str], *, teacher_suffix: str = ".teacher"):
        super().__init__()
        self.names = check_modalities(modalities, 1, "feature_distillation")
        self.teacher_suffix = teacher_suffix

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        losses, metrics = [], {}
        for m in self.names:
            e, present = embedding(batch, m)
            t, _ = embedding(batch, m + self.teacher_suffix)
            if e.shape[1] != t.shape[1]:
                raise ConfigError(
                    f"objective 'feature_distillation': the student's {m!r} embeddings have dim "
                    f"{e.shape[1]} but the teacher's have {t.shape[1]}; set model.embed_dim to {t.shape[1]}"
                )
            if present is not None and not bool(present.any()):
                continue
            loss = feature_distillation(e, t, present=present)
            metrics[m] = float(loss.detach())
            losses.append(loss)
        if not losses:
            return LossOutput(self.zero(batch), metrics)
        return LossOutput(torch.stack(losses).mean(), metrics)


@register("objective", "momentum_itc")
class MomentumItcObjective(Objective):
    """ALBEF image-text contrastive loss with momentum distillation and a feature queue.

    Optimises ``½[SCE(a Wᵀ/τ, T^{a→b}) + SCE(b Vᵀ/τ, T^{b→a})]`` with candidates ``V = [a_m; Q_a]``,
    ``W = [b_m; Q_b]`` and targets ``T = α_t q + (1−α_t) y`` (``q`` the momentum model's softmax,
    ``y`` one-hot); ``α_t = alpha·min(1, step/warmup_steps)`` (ALBEF ramps over the first epoch;
    ``warmup_steps=0`` disables the ramp). Momentum embeddings are read from
    ``emb[name + momentum_suffix]``; with ``momentum_suffix=None`` the online embeddings (detached)
    serve as momentum features (an EMA with decay 0). In training mode, each forward enqueues the
    momentum features of the present rows (FIFO, wrapping around; the queue starts with random unit
    rows as in ALBEF).

    Temperature: ``τ`` stored directly (not as a log), initialised to ``init_temperature`` (0.07),
    clamped to ``[0.001, 0.5]`` after every optimizer step (ALBEF clamps before each forward; same
    values at every forward). Reference: Li et al., *Align before Fuse: Vision and Language
    Representation Learning with Momentum Distillation*, arXiv 2107.07651. Masks: joint presence;
    absent rows are neither anchors, candidates nor enqueued. Exactly two modalities. Prefer it
    over ``clip`` on noisy pairs (web data).
    """

    queue_a: torch.Tensor
    queue_b: torch.Tensor
    queue_ptr: torch.Tensor
    step: torch.Tensor

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        momentum_suffix: str | None = None,
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        alpha: float = 0.4,
        warmup_steps: int = 0,
        queue_size: int = 0,
        embed_dim: int | None = None,
    ):
        super().__init__()
        names = check_modalities(modalities, 2, "momentum_itc")
        if len(names) != 2:
            raise ConfigError(f"objective 'momentum_itc' takes exactly 2 modalities, got {names}")
        self.pair = (names[0], names[1])
        self.momentum_suffix = momentum_suffix
        temp = check_positive(init_temperature, "init_temperature", "momentum_itc")
        self.temperature = nn.Parameter(torch.tensor(temp), requires_grad=learn_temperature)
        if not 0.0 <= alpha <= 1.0:
            raise ConfigError(f"objective 'momentum_itc': alpha must be in [0, 1], got {alpha}")
        self.alpha = float(alpha)
        if warmup_steps < 0 or queue_size < 0:
            raise ConfigError("objective 'momentum_itc': warmup_steps and queue_size must be >= 0")
        self.warmup_steps = int(warmup_steps)
        self.queue_size = int(queue_size)
        if queue_size > 0 and embed_dim is None:
            raise ConfigError("objective 'momentum_itc': queue_size > 0 needs params.embed_dim")
        dim = 1 if embed_dim is None else int(embed_dim)
        gen = torch.Generator().manual_seed(0)  # deterministic initial queue, independent of the run's RNG
        self.register_buffer(
            "queue_a", nn.functional.normalize(torch.randn(queue_size, dim, generator=gen), dim=1)
        )
        self.register_buffer(
            "queue_b", nn.functional.normalize(torch.randn(queue_size, dim, generator=gen), dim=1)
        )
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def current_alpha(self) -> float:
        """``alpha·min(1, step/warmup_steps)`` (``alpha`` when there is no warm-up)."""
        if self.warmup_steps == 0:
            return self.alpha
        return self.alpha * min(1.0, int(self.step) / self.warmup_steps)

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        m, n = self.pair
        a, pa = embedding(batch, m)
        b, pb = embedding(batch, n)
        if self.momentum_suffix is None:
            a_m, b_m = a.detach(), b.detach()
        else:
            a_m = embedding(batch, m + self.momentum_suffix)[0].detach()
            b_m = embedding(batch, n + self.momentum_suffix)[0].detach()
        mask = pair_mask(pa, pb)
        if mask is not None:
            a, b, a_m, b_m = a[mask], b[mask], a_m[mask], b_m[mask]
        alpha = self.current_alpha()
        metrics = {"temperature": float(self.temperature.detach()), "alpha": alpha}
        if a.shape[0] < 1:
            return LossOutput(self.zero(batch), metrics)
        use_queue = self.queue_size > 0
        loss = momentum_itc(
            a,
            b,
            a_m,
            b_m,
            self.temperature,
            alpha=alpha,
            queue_a=self.queue_a if use_queue else None,
            queue_b=self.queue_b if use_queue else None,
        )
        if use_queue and self.training:
            self._enqueue(a_m, b_m)
        return LossOutput(loss, metrics)

    @torch.no_grad()
    def _enqueue(self, a_m: torch.Tensor, b_m: torch.Tensor) -> None:
        k = self.queue_size
        rows = a_m.shape[0]
        if rows > k:  # only the newest k fit
            a_m, b_m, rows = a_m[-k:], b_m[-k:], k
        idx = (int(self.queue_ptr) + torch.arange(rows, device=a_m.device)) % k
        self.queue_a[idx] = a_m.to(self.queue_a.dtype)
        self.queue_b[idx] = b_m.to(self.queue_b.dtype)
        self.queue_ptr.fill_((int(self.queue_ptr) + rows) % k)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.temperature.clamp_(0.001, 0.5)
        self.step += 1


__all__ = [
    "AffinityDistillationObjective",
    "FeatureDistillationObjective",
    "MomentumItcObjective",
    "ema_update_",
]
