"""Exact scoring of a subset of rows, and exact re-ranking of approximate candidates."""

from __future__ import annotations

import numpy as np


def exact_top_k(sub: np.ndarray, rows: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``q`` ``(Q, D)`` among ``sub`` ``(R, D)``, the vectors of index ``rows`` ``(R,)``.

    Returns ``(Q, min(k, R))`` scores and rows, best first; equal scores in the top k are ordered
    by row.
    """
    scores = q @ sub.T  # (Q, R)
    k = min(k, len(rows))
    if k < len(rows):
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(scores, part, axis=1)
        order = np.lexsort((rows[part], -top), axis=1)  # by score, then by row
        idx = np.take_along_axis(part, order, axis=1)
    else:
        idx = np.lexsort((np.broadcast_to(rows, scores.shape), -scores), axis=1)
    return np.take_along_axis(scores, idx, axis=1), rows[idx]


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
