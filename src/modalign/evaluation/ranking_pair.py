"""Both retrieval directions of a modality pair from one pass over the scores.

``A -> B`` ranks B for each row of ``S = A Bᵀ``; ``B -> A`` ranks A for each *column* of the same
matrix. Rows go through :func:`~modalign.evaluation.ranking.rank_candidates` in chunks as usual;
from every chunk the columns keep their running top-K rows (merged chunk by chunk, equal scores
ordered by lower row index, the rule of :mod:`modalign.evaluation.ranking`), so the score matrix
is computed once instead of twice. Columns whose best positive is not among their top K, or where
a tie crossed a chunk's cut, are ranked again exactly on their own (few for a useful model).

The two directions are simply ranked one after the other (two matrix products) with any
unscorable row, and when no query of ``B -> A`` has more than ``ranking._MAX_COUNTED`` positives:
ranks by counting (:func:`~modalign.evaluation.ranking.rank_candidates`) then cost a second
matrix product plus two comparisons per positive, several times less than the column top-K merge
(``benchmarks/eval_speed.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from modalign.evaluation.positives import Positives
from modalign.evaluation.ranking import (
    _MAX_COUNTED,
    Ranking,
    _all_finite,
    _unit_rows,
    rank_candidates,
)

_COLUMN_BLOCK = 8192  # columns merged at once: bounds the merge's temporaries


class _ColumnTopK:
    """Running top-k rows of every column over row chunks, ties to the lower row index."""

    def __init__(self, n_cols: int, k: int) -> None:
        self.k = k
        self.vals = torch.empty(0, n_cols)
        self.rows = torch.empty(0, n_cols, dtype=torch.int64)
        self.crowded = torch.zeros(n_cols, dtype=torch.bool)  # a tie crossed a chunk's cut

    def add(self, s: torch.Tensor, start: int) -> None:
        if not torch.isfinite(s.sum(0)).all():
            self.crowded |= ~torch.isfinite(s.sum(0))  # unscorable: ranked again exactly
        q = s.shape[0]
        vals, rows = torch.topk(s, min(self.k + 1, q), dim=0)  # (k', C)
        if q > self.k:
            self.crowded |= vals[self.k - 1] == vals[self.k]
            vals, rows = vals[: self.k], rows[: self.k]
        rows = rows + start
        new_vals, new_rows = [], []
        for c0 in range(0, s.shape[1], _COLUMN_BLOCK):
            c1 = c0 + _COLUMN_BLOCK
            v = torch.cat([self.vals[:, c0:c1], vals[:, c0:c1]])  # (k + k', blk)
            r = torch.cat([self.rows[:, c0:c1], rows[:, c0:c1]])
            by_row = r.sort(dim=0).indices  # lower row first, then a stable sort by score
            v, r = v.gather(0, by_row), r.gather(0, by_row)
            order = torch.sort(v, dim=0, descending=True, stable=True).indices[: self.k]
            new_vals.append(v.gather(0, order))
            new_rows.append(r.gather(0, order))
        self.vals, self.rows = torch.cat(new_vals, 1), torch.cat(new_rows, 1)


def rank_both_directions(
    a: np.ndarray | torch.Tensor,
    b: np.ndarray | torch.Tensor,
    positives: Positives,
    top_k: int = 100,
    *,
    normalize: bool = True,
    chunk_bytes: int = 128 * 2**20,
    on_chunk: Callable[[int, int], None] | None = None,
) -> tuple[Ranking, Ranking]:
    """Rankings of ``a -> b`` and ``b -> a`` (``positives`` as seen from ``a``'s rows).

    ``on_chunk`` gets (rows done, rows to do) over both passes when the directions are ranked one
    after the other, over ``a``'s rows when both come from one pass."""
    a_t, b_t = torch.as_tensor(a), torch.as_tensor(b)
    a_t, b_t = (_unit_rows(a_t), _unit_rows(b_t)) if normalize else (a_t.float(), b_t.float())
    reverse = positives.transposed()
    common: dict[str, Any] = {"normalize": False, "chunk_bytes": chunk_bytes}
    finite = _all_finite(a_t) and _all_finite(b_t)
    k = min(top_k, a_t.shape[0])
    counted = not reverse.n_queries or int(reverse.counts().max()) <= _MAX_COUNTED
    if not finite or k == 0 or b_t.shape[0] == 0 or counted:
        n_a, total = a_t.shape[0], a_t.shape[0] + b_t.shape[0]
        first = None if on_chunk is None else lambda done, _: on_chunk(done, total)
        second = None if on_chunk is None else lambda done, _: on_chunk(n_a + done, total)
        forward = rank_candidates(a_t, b_t, positives, top_k, on_chunk=first, **common)
        return forward, rank_candidates(b_t, a_t, reverse, top_k, on_chunk=second, **common)
    columns = _ColumnTopK(b_t.shape[0], k)
    forward = rank_candidates(a_t, b_t, positives, top_k, on_chunk=on_chunk, on_scores=columns.add, **common)
    n_b, n_a = b_t.shape[0], a_t.shape[0]
    top = reverse.member(0, n_b, columns.rows.T)  # (B, K)
    found = top.any(1)
    best = torch.where(found, top.to(torch.int8).argmax(1), n_a).numpy()
    top_np = top.numpy()
    redo = np.flatnonzero((columns.crowded | (~found & torch.from_numpy(reverse.counts() > 0))).numpy())
    if redo.size:  # exact ranking of those columns as queries of their own
        again = rank_candidates(b_t[torch.from_numpy(redo)], a_t, reverse.subset(redo), top_k, **common)
        best[redo], top_np[redo] = again.best_rank, again.top_relevant
    return forward, Ranking(best, top_np, reverse.counts(), n_a)
