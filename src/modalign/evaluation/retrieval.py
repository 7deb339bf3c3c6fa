"""Cross-modal retrieval metrics with hit-rate semantics (CLIP_benchmark / open_clip conventions).

Rank (0-based) of the best-ranked positive of query q, with ``b`` the highest non-NaN score of a
positive: ``#{negatives c: S(q,c) >= b}`` -- ties go against the positive, and every NaN score
ranks after every number (a NaN candidate never beats anything; a query whose positives all score
NaN gets rank = its number of negatives). It is the position of the first positive in the full
ranking that sorts by score, NaN last, negatives before positives among equal scores; on tie-free,
NaN-free scores it equals open_clip's "lower index wins" rank. Ties and NaNs never count as hits:
a collapsed model (all scores equal) or NaN embeddings score R@k = 0 when each query has >= k
negatives, where lower-index-wins would give data-order-dependent hits.
A query's ``R@k`` hit is rank < k (*any* positive in the top k); ``median_rank`` is open_clip's
``floor(median(rank)) + 1`` (1-based). Queries without any positive among the candidates are left
out and counted (``n_queries_without_positive``).
Conventions of CLIP_benchmark (github.com/LAION-AI/CLIP_benchmark: ``R@k`` as the hit rate of
Radford et al., *Learning Transferable Visual Models From Natural Language Supervision*,
arXiv 2103.00020) and of open_clip (Cherti et al., *Reproducible scaling laws for contrastive
language-image learning*, arXiv 2212.07143).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch


def best_positive_ranks(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    query_keys: Sequence[Hashable],
    candidate_keys: Sequence[Hashable],
    chunk_size: int = 1024,
) -> np.ndarray:
    """Rank of the best-ranked positive of every query; -1 where a query has no positive.

    The rank is ``#{negatives c: S(q,c) >= b}`` with ``b`` the best non-NaN positive score: ties
    go against the positive and NaN scores rank last (module docstring).

    Args:
        queries: (Q, D) unit rows. candidates: (K, D) unit rows.
        query_keys, candidate_keys: a candidate is a positive of a query when their keys are equal.
    """
    codes: dict[Hashable, int] = {}
    qk = torch.tensor([codes.setdefault(k, len(codes)) for k in query_keys])
    ck = torch.tensor([codes.setdefault(k, len(codes)) for k in candidate_keys])
    out = []
    for start in range(0, queries.shape[0], chunk_size):
        s = queries[start : start + chunk_size].float() @ candidates.float().T  # (q, K)
        pos = qk[start : start + chunk_size, None] == ck[None, :]  # (q, K)
        scored = pos & ~s.isnan()  # positives with a number for a score
        best = torch.where(scored, s, torch.tensor(-torch.inf)).max(dim=1).values  # (q,)
        # NaN >= b is False: a NaN negative never ranks above a positive with a number
        above = (~pos & (s >= best[:, None])).sum(1)  # (q,)
        # every positive NaN: the positive ranks last, behind every negative (NaN ones included)
        rank = torch.where(scored.any(1), above, (~pos).sum(1))
        rank[~pos.any(1)] = -1
        out.append(rank)
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def retrieval_metrics(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``R@k`` (hit rate) for each k and the 1-based median rank, over queries with a positive."""
    valid = ranks[ranks >= 0]
    out: dict[str, float] = {}
    if valid.size == 0:
        return {f"R@{k}": float("nan") for k in ks} | {"median_rank": float("nan")}
    for k in ks:
        out[f"R@{k}"] = float((valid < k).mean())
    out["median_rank"] = float(np.floor(np.median(valid)) + 1)
    return out


def higher_order_ranks(
    queries: Sequence[torch.Tensor],
    candidates: torch.Tensor,
    query_keys: Sequence[Hashable],
    candidate_keys: Sequence[Hashable],
) -> np.ndarray:
    """Best-positive ranks when a query is made of several modalities, scored by Symile's MIP.

    ``MIP(q1, ..., qQ, c) = Σ_d q1_d ··· qQ_d c_d`` (Symile, arXiv 2411.01053, Sec. 3) is the dot
    product of the element-wise product of the query embeddings with the candidate, so the ranks
    come from :func:`best_positive_ranks` on that product.

    Args:
        queries: Q tensors (N, D), row i of each is part of query i.
        candidates: (K, D). query_keys, candidate_keys: as in :func:`best_positive_ranks`.
    """
    prod = queries[0]
    for q in queries[1:]:
        prod = prod * q
    return best_positive_ranks(prod, candidates, query_keys, candidate_keys)
