"""M3CoL's auxiliary contrastive terms for fusion models: M3Co (mixup contrastive) and Soft-CLIP.

Reference: "Multimodal Mixup Contrastive Learning" (M3CoL), arXiv 2409.17777, TMLR 2025, §3.
Both reduce to the soft-target cross-entropy ``SCE(Z, T) = (1/N) Σ_i -Σ_j T_ij log softmax(Z_i)_j``.

* M3Co, direction a -> b: mix a with a permuted copy, ``ã_i = β_i a_i + (1-β_i) a_π(i)``;
  ``Z = norm(ã) norm(b)ᵀ / τ`` (τ = 0.1); targets ``T_ii += β_i``, ``T_iπ(i) += 1-β_i`` (added, so
  rows sum to 1 even when π(i) = i); loss ``½[SCE(Z, T) + SCE(Zᵀ, Tᵀ)]``. With every β = 1 it is the
  symmetric InfoNCE at τ = 0.1. ``target_mode="assign"`` reproduces the reference code's overwrite.
* Soft-CLIP: ``P = p̂ t̂ᵀ/τ``, ``Q = rowsoftmax(t̂ t̂ᵀ/τ)`` (τ = 0.125), ``½[SCE(P, Q) + SCE(Pᵀ, Q)]``.

The recipe uses M3Co for the first third of training, then Soft-CLIP; modality pairs are cyclic
(1→2, 2→3, …, M→1), and only rows where both modalities are present take part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modalign.errors import ConfigError


def soft_cross_entropy(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """SCE(Z, T): (N, K) logits and (N, K) soft targets -> scalar mean over rows."""
    return -(t * F.log_softmax(z, dim=1)).sum(dim=1).mean()


def sample_mixup(n: int, beta: float = 0.15, select: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw M3Co's permutation π (N,) and mixing weights β (N,) (β = 1 where not selected).

    Uses torch's global RNG (seed it with ``torch.manual_seed``), in the reference order:
    permutation, Beta draws, selection.
    """
    perm = torch.randperm(n)
    lam = torch.distributions.Beta(beta, beta).sample((n,))
    chosen = torch.rand(n) < select
    return perm, torch.where(chosen, lam, torch.ones_like(lam))


def m3co_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    perm: torch.Tensor,
    lam: torch.Tensor,
    tau: float = 0.1,
    target_mode: str = "add",
) -> torch.Tensor:
    """M3Co loss for direction a -> b.

    Args:
        a: (N, D) embeddings of the mixed modality.
        b: (N, D) embeddings of the fixed modality (row i pairs with a_i).
        perm: (N,) permutation π.
        lam: (N,) mixing weights β in [0, 1].
        tau: temperature (logits are divided by it).
        target_mode: ``add`` (paper) or ``assign`` (reference code's overwrite).

    Returns:
        Scalar loss.
    """
    if target_mode not in ("add", "assign"):
        raise ConfigError(f"target_mode must be 'add' or 'assign', got {target_mode!r}")
    n = a.shape[0]
    lam = lam.to(a)
    mixed = lam[:, None] * a + (1 - lam[:, None]) * a[perm]  # (N, D)
    z = F.normalize(mixed, dim=1) @ F.normalize(b, dim=1).T / tau  # (N, N)
    rows = torch.arange(n, device=a.device)
    t = torch.diag(lam)
    if target_mode == "add":
        t = t.index_put((rows, perm.to(a.device)), 1 - lam, accumulate=True)
    else:
        t = t.index_put((rows, perm.to(a.device)), 1 - lam)
    return 0.5 * (soft_cross_entropy(z, t) + soft_cross_entropy(z.T, t.T))


def soft_clip_loss(p: torch.Tensor, t: torch.Tensor, tau: float = 0.125) -> torch.Tensor:
    """Soft-CLIP: (N, D) predictions p and targets t -> scalar."""
    pn, tn = F.normalize(p, dim=1), F.normalize(t, dim=1)
    logits = pn @ tn.T / tau  # (N, N)
    q = torch.softmax(tn @ tn.T / tau, dim=1)  # (N, N)
    return 0.5 * (soft_cross_entropy(logits, q) + soft_cross_entropy(logits.T, q))
