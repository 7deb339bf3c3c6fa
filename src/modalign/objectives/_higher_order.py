"""Symile: the multilinear-inner-product contrastive loss for M >= 3 modalities, and MIP scoring.

Public through :mod:`modalign.objectives.functional`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from modalign.errors import ConfigError
from modalign.objectives._pairwise import info_nce, zero_loss

NEGATIVES = ("n", "n_squared")


def mip(*tensors: torch.Tensor) -> torch.Tensor:
    """Row-wise multilinear inner product ``Σ_d Π_m x^(m)_d``.

    Args:
        *tensors: each (B, D).

    Returns:
        (B,).
    """
    prod = tensors[0]
    for t in tensors[1:]:
        prod = prod * t
    return prod.sum(-1)


def mip_scores(queries: Sequence[torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
    """Zero-shot / retrieval scores of candidates given a query made of several modalities.

    ``scores[i, k] = MIP(q^(1)_i, …, q^(Q)_i, c_k) = ((⊙_q q_i) · c_k)`` (Symile, arXiv 2411.01053,
    Sec. 3). Multiply by the objective's logit scale for softmax probabilities.

    Args:
        queries: Q >= 1 tensors, each (B, D) (or (D,) for one query).
        candidates: (K, D) rows of the target modality.

    Returns:
        (B, K) raw MIP scores.

    Raises:
        ConfigError: no query given.
    """
    if len(queries) == 0:
        raise ConfigError("mip_scores needs at least one query modality")
    prod = queries[0]
    for q in queries[1:]:
        prod = prod * q
    if prod.dim() == 1:
        prod = prod.unsqueeze(0)
    return prod @ candidates.T  # (B, K)


def _all_tuples_logits(anchor: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    # Candidate tuples (j_1, …, j_{M−1}) in row-major order over the non-anchor modalities; the
    # positive (i, …, i) sits at column i·(1 + B + B² + …). Memory O(B^{M−1}·D).
    n, d = anchor.shape
    prod = others[0]  # (B^k, D) after k merges
    for other in others[1:]:
        prod = (prod[:, None, :] * other[None, :, :]).reshape(-1, d)
    return anchor @ prod.T  # (B, B^{M−1})


def symile(
    embeddings: Sequence[torch.Tensor],
    logit_scale: torch.Tensor | float,
    *,
    negatives: str = "n",
    present: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Symile loss: CE over multilinear inner products, averaged over every modality as anchor.

    For anchor m, row i scores ``s·MIP(r^(m)_i, candidate tuple of the other modalities)`` and the
    positive is the tuple ``(i, …, i)``; ``L = (1/M) Σ_m CE_m`` (Saporta et al., *Contrasting with
    Symile: Simple Model-Agnostic Representation Learning for Unlimited Modalities*, arXiv
    2411.01053, Eq. 4). ``negatives="n_squared"``: every combination of non-anchor rows (``B^{M−1}``
    columns, deterministic). ``negatives="n"``: ``B`` columns; column ``j ≠ i`` uses rows
    ``π_a(j)`` of an independent ``torch.randperm`` per non-anchor modality (RNG order: anchors in
    order, then non-anchors in order, as ``symile==0.1.0``), the diagonal holds the positive.

    For M = 2 we call :func:`info_nce` whatever ``negatives`` says: the ``n_squared`` form is
    exactly InfoNCE (the reference raises an IndexError there), and the reference's ``n`` form with
    M = 2 is not a sensible loss (its shuffled negatives may repeat the positive).

    Args:
        embeddings: M tensors (B, D), unit rows (normalised by the caller).
        logit_scale: ``s = 1/τ``.
        negatives: ``"n"`` or ``"n_squared"``.
        present: optional (B,) bool: rows where every modality is present; others are deleted.
        generator: optional RNG for the ``"n"`` permutations (default: the global RNG).

    Returns:
        Scalar loss; 0 (with a graph) when fewer than two rows are present.

    Raises:
        ConfigError: fewer than two modalities or unknown ``negatives``.
    """
    if negatives not in NEGATIVES:
        raise ConfigError(f"symile: negatives={negatives!r}; use one of {NEGATIVES}")
    if len(embeddings) < 2:
        raise ConfigError(f"symile needs >= 2 modalities, got {len(embeddings)}")
    reps = [e[present] for e in embeddings] if present is not None else list(embeddings)
    n = reps[0].shape[0]
    if n < 2:
        return zero_loss(*reps) + zero_loss(torch.as_tensor(logit_scale))
    if len(reps) == 2:
        return info_nce(reps[0], reps[1], logit_scale)
    labels = torch.arange(n, device=reps[0].device)
    losses = []
    for m, anchor in enumerate(reps):
        others = [r for k, r in enumerate(reps) if k != m]
        if negatives == "n_squared":
            logits = _all_tuples_logits(anchor, others)
            step = sum(n**k for k in range(len(others)))
            target = labels * step
        else:
            shuffled = torch.ones_like(anchor)
            for r in others:
                perm = torch.randperm(n, generator=generator, device=r.device)
                shuffled = shuffled * r[perm]
            logits = anchor @ shuffled.T  # (B, B) negatives
            positive = mip(anchor, *others)  # (B,)
            logits = torch.diagonal_scatter(logits, positive)
            target = labels
        losses.append(F.cross_entropy(logit_scale * logits, target))
    return torch.stack(losses).mean()
