"""Exact scoring of a subset of rows (and when a filtered search uses it), exact re-ranking."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

# A filtered search scores the matching rows exactly (gather + matmul) up to exact_limit rows:
# exact, and cheaper than a FAISS walk that must skip the rows the filter leaves out.
_EXACT_SHARE = 0.05
# Row subsets of recent filters are kept (with their vectors) up to this share of the index's rows.
CACHE_SHARE = 0.5


def exact_top_k(sub: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``q`` ``(Q, D)`` among ``sub`` ``(R, D)``, the vectors of index ``rows`` ``(R,)``.

    Returns ``(Q, min(k, R))`` scores and rows, best first; equal scores in the top k are ordered
    by row. FAISS's brute-force ``knn`` (BLAS + a heap per query) does the scoring.
    """
    import faiss

    k = min(k, len(rows))
    if k == 0:
        return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
    scores, idx = faiss.knn(
        np.ascontiguousarray(q), np.ascontiguousarray(sub), k, metric=faiss.METRIC_INNER_PRODUCT
    )
    order = np.lexsort((rows[idx], -scores), axis=1)  # by score, then by row
    return np.take_along_axis(scores, order, axis=1), rows[np.take_along_axis(idx, order, axis=1)]


def rerank(vectors: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    safe = np.where(rows >= 0, rows, 0)
    scores = np.einsum("qd,qkd->qk", q, vectors[safe])  # (Q, K) exact cosines
    scores = np.where(rows >= 0, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1).astype(np.float32), np.take_along_axis(
        rows, order, axis=1
    )


def pad(a: np.ndarray, k: int) -> np.ndarray:
    if a.shape[1] >= k:
        return a
    fill = -1 if a.dtype.kind == "i" else -np.inf
    return np.concatenate([a, np.full((a.shape[0], k - a.shape[1]), fill, dtype=a.dtype)], axis=1)


def filter_key(where: Any) -> str | None:
    """A cache key for a filter, or None when it is not JSON (compile_filter then says why)."""
    try:
        return json.dumps(where, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None


def exact_limit(kind: str, params: dict[str, Any], n: int, k: int) -> float:
    """How many matching rows a filtered search scores exactly rather than inside FAISS.

    flat: up to half the rows (FAISS would scan all N anyway). hnsw: an exact pass costs ``c``
    distances for ``c`` matching rows; a filtered graph walk about ``ef * m`` distances divided by
    the share ``c / n`` of rows it may keep, so exact wins while ``c <= sqrt(ef * m * n)``.
    ivfpq: up to 5% of the rows.
    """
    if kind == "flat":
        return max(k, n // 2)
    if kind in ("hnsw", "usearch"):
        return max(k, _EXACT_SHARE * n, (params["ef_search"] * params["m"] * n) ** 0.5)
    return max(k, _EXACT_SHARE * n)
