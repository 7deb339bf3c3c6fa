"""M3CoL's auxiliary contrastive terms as the fusion predictor uses them (raw, unnormalised features).

The losses are the objective library's :func:`~modalign.objectives._mixup.m3co` and
:func:`~modalign.objectives._mixup.soft_clip` (M3CoL, arXiv 2409.17777, §3); these wrappers only
normalise the predictor's features first and draw M3Co's mixing randomness. The recipe uses M3Co
for the first third of training, then Soft-CLIP; modality pairs are cyclic (1→2, 2→3, …, M→1), and
only rows where both modalities are present take part.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modalign.objectives._mixup import m3co, soft_clip
from modalign.objectives._pairwise import soft_cross_entropy

__all__ = ["m3co_loss", "sample_mixup", "soft_clip_loss", "soft_cross_entropy"]


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
    """M3Co for direction a -> b on (N, D) features (``b`` is normalised here; see ``m3co``)."""
    return m3co(
        a, F.normalize(b, dim=1), perm=perm.to(a.device), betas=lam, temperature=tau, target_mode=target_mode
    )


def soft_clip_loss(p: torch.Tensor, t: torch.Tensor, tau: float = 0.125) -> torch.Tensor:
    """Soft-CLIP on (N, D) predictions ``p`` and targets ``t`` (both normalised here)."""
    return soft_clip(F.normalize(p, dim=1), F.normalize(t, dim=1), tau)
