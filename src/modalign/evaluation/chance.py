"""Chance levels: each metric's expected value when the candidates are ranked at random.

A query with ``n`` positives among ``C`` candidates under a uniformly random ranking (exact
expectations, averaged over queries like the metric itself):

- ``R@k``: ``1 - binom(C-n, k) / binom(C, k)`` (no positive among k random places);
- ``precision@k``: ``n / C``; ``recall@k``: ``min(k, C) / C``;
- ``MRR@10``: ``Σ_{i≤10} (1/i) P(first positive at i)``, ``P(first ≥ i) = binom(C-n, i-1)/binom(C, i-1)``;
- ``nDCG@10``: ``(n/C) Σ_{i≤10} 1/log2(i+1)`` over the ideal DCG;
- ``MAP@100``: ``Σ_{i≤100} E[h_i · precision@i] / min(100, n)`` with
  ``E[h_i · precision@i] = (p + (i-1) p (n-1)/(C-1)) / i``, ``p = n / C``;
- ``mean_rank``: ``(C+1) / (n+1)``; ``median_rank``: the median of the pooled first-positive rank.

With ``match_on: label`` and 10 balanced classes, R@1 by chance is about 0.1, not 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import lgamma

import numpy as np

from modalign.evaluation.retrieval import MAP_K, MRR_K, NDCG_K


def _none_in_first(c: int, n: int, i: int) -> float:
    """P(no positive among the first i places) = binom(C-n, i) / binom(C, i)."""
    if i <= 0:
        return 1.0
    if c - n < i:
        return 0.0
    return float(np.exp(lgamma(c - n + 1) - lgamma(c - n - i + 1) - lgamma(c + 1) + lgamma(c - i + 1)))


def _per_query(c: int, n: int, ks: Sequence[int]) -> dict[str, float]:
    out = {f"R@{k}": 1.0 - _none_in_first(c, n, min(k, c)) for k in ks}
    p = n / c
    for k in ks:
        out[f"precision@{k}"] = p * min(k, c) / k
        out[f"recall@{k}"] = min(k, c) / c
    survive = [_none_in_first(c, n, i) for i in range(MRR_K + 1)]
    out[f"MRR@{MRR_K}"] = sum((survive[i - 1] - survive[i]) / i for i in range(1, min(MRR_K, c) + 1))
    discount = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    out[f"nDCG@{NDCG_K}"] = float(p * discount[: min(NDCG_K, c)].sum() / discount[: min(NDCG_K, n)].sum())
    both = p * (n - 1) / (c - 1) if c > 1 else 0.0
    out[f"MAP@{MAP_K}"] = sum((p + (i - 1) * both) / i for i in range(1, min(MAP_K, c) + 1)) / min(MAP_K, n)
    out["mean_rank"] = (c + 1) / (n + 1)
    return out


def retrieval_chance(n_positives: np.ndarray, n_candidates: int, ks: Sequence[int]) -> dict[str, float]:
    """Chance level of every retrieval metric for queries with ``n_positives`` (0 = left out)."""
    n_pos = n_positives[n_positives > 0]
    if n_pos.size == 0 or n_candidates == 0:
        return {}
    values, weights = np.unique(n_pos, return_counts=True)
    rows = [_per_query(n_candidates, int(n), ks) for n in values]
    w = weights / weights.sum()
    out = {k: float(sum(wi * r[k] for wi, r in zip(w, rows))) for k in rows[0]}
    # pooled distribution of the 1-based first-positive rank: P(rank > r) averaged over queries
    r = np.arange(n_candidates + 1)
    survive = np.zeros(n_candidates + 1)
    for wi, n in zip(w, values):
        survive += wi * np.array([_none_in_first(n_candidates, int(n), int(i)) for i in r])
    out["median_rank"] = float(np.argmax(survive <= 0.5))  # first r with P(rank > r) <= 1/2
    return {k: round(v, 12) for k, v in out.items()}  # log-gamma sums: 0.1 not 0.09999999999958


def zero_shot_chance(n_classes: int) -> dict[str, float]:
    """Accuracy of a random guess among ``n_classes``: top-1, top-5, mean per-class recall."""
    if n_classes <= 0:
        return {}
    return {
        "accuracy": 1.0 / n_classes,
        "top5_accuracy": min(5, n_classes) / n_classes,
        "mean_per_class_recall": 1.0 / n_classes,
    }


def linear_probe_chance(n_classes: int) -> dict[str, float]:
    """:func:`zero_shot_chance` under the linear probe's names (``lp_acc1`` ...)."""
    names = {
        "accuracy": "lp_acc1",
        "top5_accuracy": "lp_acc5",
        "mean_per_class_recall": "lp_mean_per_class_recall",
    }
    return {names[k]: v for k, v in zero_shot_chance(n_classes).items()}
