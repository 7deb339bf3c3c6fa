"""Losses whose targets come from another model.

TinyCLIP affinity mimicking (teacher -> student), CLIP-KD feature distillation (student embeddings
regress onto the teacher's) and ALBEF momentum-distilled ITC (EMA model and feature queue). Public
through :mod:`modalign.objectives.functional`.
"""

from __future__ import annotations

import torch

from modalign.objectives._pairwise import _select, soft_cross_entropy, zero_loss


def affinity_distillation(
    s_a: torch.Tensor,
    s_b: torch.Tensor,
    t_a: torch.Tensor,
    t_b: torch.Tensor,
    s_scale: torch.Tensor | float,
    t_scale: torch.Tensor | float,
    *,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """TinyCLIP affinity mimicking: the student's a→b and b→a distributions mimic the teacher's.

    ``A^S = s_S a^S b^Sᵀ``, ``A^T = s_T a^T b^Tᵀ`` (teacher detached);
    ``L = ½[SCE(A^S, rowsoftmax(A^T)) + SCE(A^Sᵀ, rowsoftmax(A^Tᵀ))]`` (Wu et al., *TinyCLIP: CLIP
    Distillation via Affinity Mimicking and Weight Inheritance*, arXiv 2309.12314, Eq. 2-3; equal
    to open_clip's ``DistillClipLoss`` distill term). It is ``KL + H(teacher)``: it does not reach 0
    when student = teacher, but its gradient does.

    Args:
        s_a: (B, D_S) student unit rows of modality a.
        s_b: (B, D_S) student unit rows of modality b.
        t_a: (B, D_T) teacher unit rows (``D_T`` may differ from ``D_S``).
        t_b: (B, D_T) teacher unit rows.
        s_scale: student logit scale ``s_S``.
        t_scale: teacher logit scale ``s_T``.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar loss.
    """
    s_a, s_b, t_a, t_b = _select(present, s_a, s_b, t_a, t_b)
    if s_a.shape[0] < 1:
        return zero_loss(s_a, s_b)
    student = s_scale * (s_a @ s_b.T)  # (B, B)
    with torch.no_grad():
        teacher = (t_scale * (t_a @ t_b.T)).to(student.dtype)  # (B, B)
        p_ab = torch.softmax(teacher, dim=1)
        p_ba = torch.softmax(teacher.T, dim=1)
    return 0.5 * (soft_cross_entropy(student, p_ab) + soft_cross_entropy(student.T, p_ba))


def feature_distillation(
    s: torch.Tensor, t: torch.Tensor, *, present: torch.Tensor | None = None
) -> torch.Tensor:
    """CLIP-KD feature distillation: half the mean squared distance of student and teacher rows.

    ``L = (1/B) Σ_i ½‖s_i − t_i‖²`` (teacher detached), which is ``1 − cos(s_i, t_i)`` averaged for
    unit rows (Yang et al., *CLIP-KD: An Empirical Study of CLIP Model Distillation*, arXiv
    2307.12732, the "feature distillation (FD)" MSE loss, up to its constant factor). Unlike
    affinity mimicking it places every student row where the teacher's is, so both must live in
    the same ``D``.

    Args:
        s: (B, D) student unit rows of one modality.
        t: (B, D) teacher unit rows of the same samples.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar loss.
    """
    s, t = _select(present, s, t)
    if s.shape[0] < 1:
        return zero_loss(s)
    return 0.5 * (s - t.detach().to(s.dtype)).pow(2).sum(1).mean()


def momentum_itc(
    a: torch.Tensor,
    b: torch.Tensor,
    a_m: torch.Tensor,
    b_m: torch.Tensor,
    temperature: torch.Tensor | float,
    *,
    alpha: float = 0.4,
    queue_a: torch.Tensor | None = None,
    queue_b: torch.Tensor | None = None,
    ids: torch.Tensor | None = None,
    queue_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """ALBEF image-text contrastive loss with momentum-distilled soft targets.

    Candidates ``V = [a_m; Q_a]``, ``W = [b_m; Q_b]`` ``(B+K, D)`` (batch first). Pseudo-targets
    ``q^{a→b} = softmax(a_m Wᵀ/τ)``, ``q^{b→a} = softmax(b_m Vᵀ/τ)`` (no gradient); hard targets
    ``y`` one-hot on column i, or uniform over columns with the same id when ``ids`` are given;
    ``T = α q + (1−α) y``; ``L = ½[SCE(a Wᵀ/τ, T^{a→b}) + SCE(b Vᵀ/τ, T^{b→a})]`` (Li et al.,
    *Align before Fuse*, arXiv 2107.07651, Eq. 1-2 and Sec. 3.3). With ``α = 0`` and no queue it is
    InfoNCE at ``s = 1/τ``.

    Args:
        a: (B, D) online unit rows of modality a.
        b: (B, D) online unit rows of modality b.
        a_m: (B, D) momentum-model rows of a (detached inside).
        b_m: (B, D) momentum-model rows of b.
        temperature: ``τ`` (a tensor keeps its gradient through the online logits).
        alpha: target mixing weight (after any ramp).
        queue_a: optional (K, D) queued momentum features of a.
        queue_b: optional (K, D) queued momentum features of b.
        ids: optional (B,) sample ids; same id = positive (captions of one image).
        queue_ids: optional (K,) ids of the queued rows (−100 for never-filled rows).

    Returns:
        Scalar loss.
    """
    n = a.shape[0]
    if n < 1:
        return zero_loss(a, b)
    with torch.no_grad():
        v_all = a_m.detach() if queue_a is None else torch.cat([a_m.detach(), queue_a.to(a.dtype)])
        w_all = b_m.detach() if queue_b is None else torch.cat([b_m.detach(), queue_b.to(b.dtype)])
        if ids is None:
            y = torch.zeros((n, v_all.shape[0]), dtype=a.dtype, device=a.device)
            y[:, :n] = torch.eye(n, dtype=a.dtype, device=a.device)
        else:
            all_ids = ids if queue_ids is None else torch.cat([ids, queue_ids.to(ids.dtype)])
            same = (ids[:, None] == all_ids[None, :]).to(a.dtype)  # (B, B+K)
            y = same / same.sum(1, keepdim=True)
        tau = temperature.detach() if isinstance(temperature, torch.Tensor) else temperature
        if alpha > 0:
            q_ab = torch.softmax(a_m.detach() @ w_all.T / tau, dim=1)
            q_ba = torch.softmax(b_m.detach() @ v_all.T / tau, dim=1)
            t_ab = alpha * q_ab + (1 - alpha) * y
            t_ba = alpha * q_ba + (1 - alpha) * y
        else:
            t_ab = t_ba = y
    logits_ab = a @ w_all.T / temperature  # (B, B+K)
    logits_ba = b @ v_all.T / temperature
    return 0.5 * (soft_cross_entropy(logits_ab, t_ab) + soft_cross_entropy(logits_ba, t_ba))
