"""Retrieval metrics on embeddings: CLIP_benchmark hit rates and sentence-transformers IR metrics.

Ranks follow :mod:`modalign.evaluation.ranking` (lower candidate index wins ties, unscorable rows
never hit). Per query, with relevant set R (``n_R`` positives), ranked list r_1..r_k and
``h_i = 1[r_i ∈ R]`` (EVALUATION.md §1, §4.1):

- ``R@k``: hit rate ``1[Σ_{i≤k} h_i > 0]`` -- CLIP_benchmark's ``*_retrieval_recall@k`` (the
  CLIP-paper R@k, also sentence-transformers' ``accuracy@k``), any positive in the top k counts;
- ``precision@k`` = ``Σ_{i≤k} h_i / k``; ``recall@k`` = ``Σ_{i≤k} h_i / n_R`` (true recall);
- ``MRR@10`` = ``1 / min{i ≤ 10 : h_i}`` (0 if none); ``nDCG@10`` = ``Σ h_i / log2(i+1)`` over
  ``Σ_{i≤min(10, n_R)} 1 / log2(i+1)``; ``MAP@100`` = ``Σ_{i≤100} h_i · precision@i / min(100, n_R)``;
- ``mean_rank`` = ``mean(rank) + 1``, ``median_rank`` = ``floor(median(rank)) + 1`` (open_clip,
  1-based) of each query's best-ranked positive.

Queries without any positive are left out (as sentence-transformers does) and counted in
``n_queries_without_positive``; ``n_queries`` counts the rest.
References: CLIP_benchmark (github.com/LAION-AI/CLIP_benchmark, hit rate of Radford et al.,
arXiv 2103.00020), open_clip (Cherti et al., arXiv 2212.07143), sentence-transformers
``InformationRetrievalEvaluator`` (Reimers & Gurevych, arXiv 1908.10084).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from modalign.evaluation.positives import as_positives
from modalign.evaluation.ranking import Ranking, rank_candidates

NDCG_K, MRR_K, MAP_K = 10, 10, 100
_MAP_ROWS = 8192  # queries per block of the MAP@100 sums


def per_query_metrics(ranking: Ranking, ks: Sequence[int] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """Each metric's value for every query that has a positive: ``{key: (Q',)}`` plus ``rank``.

    ``MAP@100`` needs the first 100 places of the ranking (``top_k`` >= 100 when ranking). The
    mean of each array over queries is the metric, except ``rank`` (best-positive 0-based rank),
    from which :func:`aggregate` takes ``mean_rank`` and ``median_rank``.
    """
    keep = ranking.n_positives > 0
    rank = ranking.best_rank[keep]
    rel = ranking.top_relevant[keep]  # (Q', K) bool: float64 only in row blocks (MAP@100)
    n_r = ranking.n_positives[keep].astype(np.float64)
    out: dict[str, np.ndarray] = {"rank": rank.astype(np.float64)}
    for k in ks:
        out[f"R@{k}"] = (rank < k).astype(np.float64)
    for k in ks:
        out[f"precision@{k}"] = rel[:, :k].sum(1) / k
        out[f"recall@{k}"] = rel[:, :k].sum(1) / n_r
    out[f"MRR@{MRR_K}"] = np.where(rank < MRR_K, 1.0 / (rank + 1.0), 0.0)
    discount = 1.0 / np.log2(np.arange(2, NDCG_K + 2))
    ideal = np.cumsum(discount)[np.minimum(n_r, NDCG_K).astype(int) - 1]
    out[f"nDCG@{NDCG_K}"] = (rel[:, :NDCG_K] * discount[: rel[:, :NDCG_K].shape[1]]).sum(1) / ideal
    if rel.shape[1] >= min(MAP_K, ranking.n_candidates):  # the list is deep enough for MAP@100
        ap = np.empty(len(rel))
        for s in range(0, len(rel), _MAP_ROWS):  # (rows, 100) float64 temporaries, not (Q', 100)
            top = rel[s : s + _MAP_ROWS, :MAP_K]
            precision_at_i = np.cumsum(top, 1) / np.arange(1, top.shape[1] + 1)
            ap[s : s + _MAP_ROWS] = (top * precision_at_i).sum(1)
        out[f"MAP@{MAP_K}"] = ap / np.minimum(n_r, MAP_K)
    return out


def aggregate(per_query: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict[str, float]:
    """The metrics of :func:`per_query_metrics` over all queries, or over ``rows`` (a resample)."""
    pick = (lambda a: a) if rows is None else (lambda a: a[rows])
    rank = pick(per_query["rank"])
    if rank.size == 0:
        return {k: float("nan") for k in per_query if k != "rank"} | {
            "mean_rank": float("nan"),
            "median_rank": float("nan"),
        }
    out = {k: float(pick(v).mean()) for k, v in per_query.items() if k != "rank"}
    out["mean_rank"] = float(rank.mean() + 1)
    out["median_rank"] = float(np.floor(np.median(rank)) + 1)
    return out


def retrieval_metrics(
    queries: Any,
    candidates: Any,
    positives: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    normalize: bool = True,
    chunk_bytes: int = 256 * 2**20,
    progress: bool = False,
    map_at_100: bool = True,
) -> dict[str, float]:
    """Retrieval metrics of ``queries`` (Q, D) against ``candidates`` (C, D).

    Args:
        positives: (Q, C) bool array, or for each query the list of its positive candidate indices.
        ks: cut-offs of ``R@k``, ``precision@k`` and ``recall@k``.
        normalize: L2-normalise rows before scoring (cosine).
        chunk_bytes: working memory per chunk of queries; 100,000 x 100,000 fits in the default.
        progress: show a Rich progress bar over query chunks.
        map_at_100: also ``MAP@100``, which needs the first 100 places of each ranking; without it
            the list is only as deep as ``max(ks, 10)``, about 4x less work for the top-k of
            queries with more than 8 positives (the others are ranked by counting, at any depth).

    Returns:
        ``R@k``, ``precision@k``, ``recall@k`` per k, ``MRR@10``, ``nDCG@10``, ``MAP@100``,
        ``mean_rank``, ``median_rank``, ``n_queries``, ``n_queries_without_positive`` (module doc).

    Example:
        >>> import numpy as np
        >>> x = np.eye(3, dtype=np.float32)
        >>> retrieval_metrics(x, x, [[0], [1], [2]], ks=(1,))["R@1"]
        1.0
    """
    per_query, ranking = retrieval_per_query(
        queries,
        candidates,
        positives,
        ks,
        normalize=normalize,
        chunk_bytes=chunk_bytes,
        progress=progress,
        map_at_100=map_at_100,
    )
    return aggregate(per_query) | counts(ranking)


def retrieval_per_query(
    queries: Any,
    candidates: Any,
    positives: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    normalize: bool = True,
    chunk_bytes: int = 256 * 2**20,
    progress: bool = False,
    map_at_100: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, np.ndarray], Ranking]:
    """Per-query values (for bootstrap intervals) and the ranking they come from; ``on_chunk``
    is called with (queries ranked, queries) after every chunk."""
    pos = as_positives(positives, len(queries), len(candidates))
    top_k = max([*ks, NDCG_K, MRR_K, MAP_K if map_at_100 else 0])
    with _progress(progress, f"ranking {len(candidates):,} candidates", on_chunk) as update:
        ranking = rank_candidates(
            queries, candidates, pos, top_k, normalize=normalize, chunk_bytes=chunk_bytes, on_chunk=update
        )
    return per_query_metrics(ranking, ks), ranking


@contextmanager
def _progress(
    show: bool, label: str, on_chunk: Callable[[int, int], None] | None
) -> Iterator[Callable[[int, int], None] | None]:
    """The ``on_chunk`` callback to rank with: ``on_chunk`` itself, plus a Rich bar when ``show``."""
    if not show:
        yield on_chunk
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)
            if on_chunk is not None:
                on_chunk(done, total)

        yield update


def retrieval_per_query_both(
    a: Any,
    b: Any,
    positives: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    normalize: bool = True,
    chunk_bytes: int = 128 * 2**20,
    map_at_100: bool = True,
    progress: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[tuple[dict[str, np.ndarray], Ranking], tuple[dict[str, np.ndarray], Ranking]]:
    """:func:`retrieval_per_query` of ``a -> b`` and of ``b -> a``, from one pass over the scores
    when that is cheaper (:mod:`modalign.evaluation.ranking_pair`); ``positives`` as seen from ``a``;
    ``progress`` and ``on_chunk`` as in :func:`retrieval_per_query`, over both directions."""
    from modalign.evaluation.ranking_pair import rank_both_directions

    pos = as_positives(positives, len(a), len(b))
    top_k = max([*ks, NDCG_K, MRR_K, MAP_K if map_at_100 else 0])
    with _progress(progress, f"ranking {len(a):,} x {len(b):,} both ways", on_chunk) as update:
        forward, backward = rank_both_directions(
            a, b, pos, top_k, normalize=normalize, chunk_bytes=chunk_bytes, on_chunk=update
        )
    return (per_query_metrics(forward, ks), forward), (per_query_metrics(backward, ks), backward)


def retrieval_metrics_both(
    a: Any,
    b: Any,
    positives: Any,
    ks: Sequence[int] = (1, 5, 10),
    *,
    normalize: bool = True,
    map_at_100: bool = True,
    progress: bool = False,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """:func:`retrieval_metrics` of ``a -> b`` and ``b -> a`` (:func:`retrieval_per_query_both`)."""
    (pq_ab, r_ab), (pq_ba, r_ba) = retrieval_per_query_both(
        a, b, positives, ks, normalize=normalize, map_at_100=map_at_100, progress=progress, on_chunk=on_chunk
    )
    return aggregate(pq_ab) | counts(r_ab), aggregate(pq_ba) | counts(r_ba)


def counts(ranking: Ranking) -> dict[str, float]:
    """Provenance counts: queries with and without positives, candidates, positives."""
    has = ranking.n_positives > 0
    return {
        "n_queries": float(has.sum()),
        "n_queries_without_positive": float((~has).sum()),
        "n_candidates": float(ranking.n_candidates),
        "n_positives": float(ranking.n_positives.sum()),
    }


def rank_metrics(ranks: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``R@k`` (hit rate) and the 1-based median rank from best-positive ranks (-1 = no positive)."""
    valid = ranks[ranks >= 0]
    if valid.size == 0:
        return {f"R@{k}": float("nan") for k in ks} | {"median_rank": float("nan")}
    out = {f"R@{k}": float((valid < k).mean()) for k in ks}
    out["median_rank"] = float(np.floor(np.median(valid)) + 1)
    return out
