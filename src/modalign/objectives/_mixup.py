"""Mixup contrastive losses: M3Co and Soft-CLIP (M3CoL), geodesic mixup m²-Mix.

Public through :mod:`modalign.objectives.functional`. Randomness (permutations, mixing weights) is
an argument of the pure functions; the registered modules draw it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modalign.errors import ConfigError
from modalign.objectives._pairwise import _select, info_nce, soft_cross_entropy, zero_loss


def slerp(a: torch.Tensor, b: torch.Tensor, lam: float | torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Row-wise spherical interpolation ``[sin(λθ) a + sin((1−λ)θ) b]/sin θ``, ``θ = arccos⟨a, b⟩``.

    ``λ`` weights ``a`` (λ = 1 gives ``a``). The cosine is clamped to ``[−1+eps, 1−eps]`` and
    near-parallel rows (θ < eps') fall back to normalised linear interpolation, so there is no NaN
    at ``⟨a, b⟩ → ±1`` (the reference divides by ``sin θ → 0``).

    Args:
        a: (B, D) unit rows.
        b: (B, D) unit rows.
        lam: scalar or (B,) weights of ``a``.
        eps: cosine clamp.

    Returns:
        (B, D) unit rows.
    """
    lam_t = torch.as_tensor(lam, dtype=a.dtype, device=a.device)
    if lam_t.dim() == 1:
        lam_t = lam_t[:, None]
    cos = (a * b).sum(1, keepdim=True).clamp(-1 + eps, 1 - eps)
    theta = torch.acos(cos)  # (B, 1)
    sin = torch.sin(theta)
    out = (torch.sin(lam_t * theta) * a + torch.sin((1 - lam_t) * theta) * b) / sin
    linear = F.normalize(lam_t * a + (1 - lam_t) * b, dim=1)
    return torch.where(theta < 1e-4, linear, out)


def m3co_targets(perm: torch.Tensor, betas: torch.Tensor, *, target_mode: str = "add") -> torch.Tensor:
    """M3Co targets: ``T_ii += β_i``, ``T_{i,π(i)} += 1−β_i`` (rows sum to one).

    ``target_mode="assign"`` reproduces the reference's overwrite (``T_{i,π(i)} = 1−β_i``), whose
    rows sum to ``1−β_i`` when ``π(i) = i``.

    Args:
        perm: (B,) permutation.
        betas: (B,) mixing weights of sample i.
        target_mode: ``"add"`` (paper) or ``"assign"`` (reference compat).

    Returns:
        (B, B) targets.
    """
    n = perm.shape[0]
    rows = torch.arange(n, device=perm.device)
    t = torch.diag(betas)
    if target_mode == "add":
        t = t.index_put((rows, perm), 1 - betas, accumulate=True)
    elif target_mode == "assign":
        t = t.index_put((rows, perm), 1 - betas)
    else:
        raise ConfigError(f"m3co: target_mode={target_mode!r}; use 'add' or 'assign'")
    return t


def m3co(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    perm: torch.Tensor,
    betas: torch.Tensor,
    temperature: float = 0.1,
    target_mode: str = "add",
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """M3Co mixup contrastive loss for the ordered pair ``a → b``.

    Mix ``ã_i = β_i a_i + (1−β_i) a_{π(i)}``, ``Z = normalise(ã) bᵀ/τ``, targets from
    :func:`m3co_targets`; ``L = ½[SCE(Z, T) + SCE(Zᵀ, Tᵀ)]`` (Kumar et al., *Multimodal Mixup
    Contrastive Learning*, M3CoL, arXiv 2409.17777, Eq. 2). With all ``β = 1`` it is InfoNCE at
    ``s = 1/τ``.

    Args:
        a: (B, D) embeddings that are mixed.
        b: (B, D) unit rows of the fixed side.
        perm: (B,) permutation over the (present) rows.
        betas: (B,) mixing weights (1 = not mixed).
        temperature: ``τ`` (fixed, 0.1 in the reference).
        target_mode: ``"add"`` or ``"assign"`` (reference overwrite bug).
        present: optional (B,) bool; absent rows deleted first, ``perm``/``betas`` then index the
            remaining rows.

    Returns:
        Scalar loss.
    """
    a, b = _select(present, a, b)
    if a.shape[0] < 1:
        return zero_loss(a, b)
    mixed = betas[:, None].to(a.dtype) * a + (1 - betas[:, None].to(a.dtype)) * a[perm]
    logits = F.normalize(mixed, dim=1) @ b.T / temperature  # (B, B)
    t = m3co_targets(perm, betas.to(a.dtype), target_mode=target_mode)
    return 0.5 * (soft_cross_entropy(logits, t) + soft_cross_entropy(logits.T, t.T))


def soft_clip(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float = 0.125,
    *,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Soft-CLIP: contrastive loss whose targets are ``b``'s own similarity distribution.

    ``P = a bᵀ/τ``, ``Q = rowsoftmax(b bᵀ/τ)``, ``L = ½[SCE(P, Q) + SCE(Pᵀ, Q)]`` (MindEye, Scotti
    et al., arXiv 2305.18274, Sec. 2.3; used by M3CoL after the mixup phase). As in the reference,
    ``Q`` is not detached: when both towers train, the gradient also flows through the targets.

    Args:
        a: (B, D) unit rows (predictions).
        b: (B, D) unit rows (targets side).
        temperature: ``τ``.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar loss.
    """
    a, b = _select(present, a, b)
    if a.shape[0] < 1:
        return zero_loss(a, b)
    logits = a @ b.T / temperature
    targets = torch.softmax(b @ b.T / temperature, dim=1)
    return 0.5 * (soft_cross_entropy(logits, targets) + soft_cross_entropy(logits.T, targets))


def m2mix(
    a: torch.Tensor,
    b: torch.Tensor,
    lam: float | torch.Tensor,
    temperature: float = 0.01,
    mix_temperature: float | None = 0.07,
    *,
    mix_weight: float = 0.01,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """m²-Mix: CLIP loss plus geodesic-mixup hard negatives.

    ``L_CLIP = info_nce(a, b, 1/τ)``; mixed negatives ``m_j = slerp_λ(a_j, b_j)``;
    ``A = a mᵀ`` and ``B′ = b mᵀ`` with their diagonals replaced by ``⟨a_i, b_i⟩``;
    ``L_mix = CE(A/τ₂, i) + CE(B′/τ₂, i)`` (a sum); ``L = L_CLIP + w·L_mix`` (Oh et al., *Geodesic
    Multi-Modal Mixup for Robust Fine-Tuning*, arXiv 2203.03897, Eq. 6). ``w`` includes any epoch
    schedule (the module applies ``1/(e+1)``).

    Args:
        a: (B, D) unit rows.
        b: (B, D) unit rows.
        lam: mixing weight of ``a`` (one scalar per batch, ``Beta(β, β)`` in the paper).
        temperature: ``τ`` of the CLIP term (0.01 in the paper).
        mix_temperature: ``τ₂`` of the mix term; None uses ``τ``.
        mix_weight: ``w``.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar loss.
    """
    a, b = _select(present, a, b)
    n = a.shape[0]
    if n < 2:
        return zero_loss(a, b)
    clip = info_nce(a, b, 1.0 / temperature)
    if mix_weight == 0.0:
        return clip
    tau2 = temperature if mix_temperature is None else mix_temperature
    mixed = slerp(a, b, lam)  # (B, D)
    pos = (a * b).sum(1)  # (B,)
    logits_a = torch.diagonal_scatter(a @ mixed.T, pos) / tau2  # (B, B)
    logits_b = torch.diagonal_scatter(b @ mixed.T, pos) / tau2
    labels = torch.arange(n, device=a.device)
    mix = F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_b, labels)
    return clip + mix_weight * mix
