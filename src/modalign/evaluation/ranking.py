"""Chunked ranking of candidates for retrieval metrics: per-query best ranks and top-K relevance.

Rules (EVALUATION.md §0): scores are dot products of L2-normalised rows; the rank (0-based) of a
candidate ``c`` for query ``q`` is ``#{c': S(q,c') > S(q,c)} + #{c': S(q,c') = S(q,c), c' < c}``,
i.e. ties go to the **lower candidate index** (open_clip's rule: deterministic and chunk-safe).
A row with a non-finite value, or a score that is not finite, is *unscorable*: it ranks after every
finite score and an unscorable positive is never relevant, so NaN embeddings never score hits
(a NaN query gets rank = number of candidates, a miss for every k).

Speed: a query with few positives (paired data, a handful of captions per image) gets each
positive's rank by counting the scores above it; only queries with many positives (matching on a
label) need a top-K pass and a sort (:func:`_rank_finite`).

Memory: the (Q, C) score matrix is never held: queries go in chunks sized so that one chunk's
scores and masks stay near ``chunk_bytes`` (default 256 MB), whatever Q and C are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from modalign.evaluation.positives import Positives

# bytes per score-matrix element held at once in a chunk (scores, sort key, masks, comparisons)
_BYTES_PER_ELEMENT = 24
_ROW_BLOCK = 4096  # embedding rows per block of the whole-matrix passes (normalise, finite check)
# a query with at most this many positives is ranked by counting (two passes over its scores per
# positive); with more, one top-k pass and a sort cost less
_MAX_COUNTED = 8


@dataclass(frozen=True)
class Ranking:
    """Per-query ranking facts that every retrieval metric is computed from.

    Attributes:
        best_rank: (Q,) 0-based rank of the best-ranked relevant positive (C when none is scorable).
        top_relevant: (Q, K) whether the candidate at each of the first K places is a positive.
        n_positives: (Q,) positives of each query (unscorable ones included).
        n_candidates: C.
    """

    best_rank: np.ndarray
    top_relevant: np.ndarray
    n_positives: np.ndarray
    n_candidates: int


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    """(N, D) float32 rows scaled to unit length; rows with a non-finite value or zero norm become
    NaN. In row blocks: one output copy and no (N, D) temporaries."""
    out = torch.empty(x.shape, dtype=torch.float32)
    for s in range(0, len(x), _ROW_BLOCK):
        b = x[s : s + _ROW_BLOCK].float()
        norm = b.norm(dim=1, keepdim=True)
        ok = torch.isfinite(b).all(1, keepdim=True) & (norm > 0) & torch.isfinite(norm)
        out[s : s + _ROW_BLOCK] = torch.where(ok, b / norm.clamp_min(1e-30), torch.tensor(float("nan")))
    return out


def _all_finite(x: torch.Tensor) -> bool:
    """Whether every value of (N, D) ``x`` is finite, in row blocks (``torch.isfinite`` of a float
    tensor builds an ``abs()`` copy and masks of all of it at once)."""
    return all(bool(torch.isfinite(x[s : s + _ROW_BLOCK]).all()) for s in range(0, len(x), _ROW_BLOCK))


def rank_candidates(
    queries: np.ndarray | torch.Tensor,
    candidates: np.ndarray | torch.Tensor,
    positives: Positives,
    top_k: int = 100,
    *,
    normalize: bool = True,
    chunk_bytes: int = 256 * 2**20,
    on_chunk: Callable[[int, int], None] | None = None,
    on_scores: Callable[[torch.Tensor, int], None] | None = None,
) -> Ranking:
    """Best-positive ranks and top-``top_k`` relevance of every query, chunk by chunk.

    Args:
        queries: (Q, D). candidates: (C, D).
        positives: built with :func:`~modalign.evaluation.positives.as_positives`.
        top_k: length K of the ranked list kept per query (capped at C).
        normalize: L2-normalise rows first (off to score exactly as a peer that scores raw rows).
        chunk_bytes: working memory of one chunk of queries.
        on_chunk: called with (queries done, Q) after every chunk (progress display).
        on_scores: called with every (q, C) score chunk and its first query's index (the reverse
            direction's ranking reads the same scores: :mod:`modalign.evaluation.ranking_pair`).
    """
    q_all, c_all = torch.as_tensor(queries), torch.as_tensor(candidates)
    q_all, c_all = (_unit_rows(q_all), _unit_rows(c_all)) if normalize else (q_all.float(), c_all.float())
    n_q, n_c = q_all.shape[0], c_all.shape[0]
    k = min(top_k, n_c)
    step = max(1, chunk_bytes // (_BYTES_PER_ELEMENT * max(n_c, 1)))
    best = np.empty(n_q, np.int64)
    top = np.zeros((n_q, k), bool)
    cand_idx = torch.arange(n_c)
    for start in range(0, n_q, step):
        stop = min(start + step, n_q)
        s = q_all[start:stop] @ c_all.T  # (q, C)
        if on_scores is not None:
            on_scores(s, start)
        # a row sum is non-finite when any score is (|score| <= 1 for unit rows: no overflow)
        if k and bool(torch.isfinite(s.sum(1)).all()):
            best[start:stop], top[start:stop] = _rank_finite(s, k, positives, start, stop, cand_idx)
        else:
            best[start:stop], top[start:stop] = _rank_exhaustive(s, k, positives, start, stop, cand_idx)
        if on_chunk is not None:
            on_chunk(stop, n_q)
    return Ranking(best, top, positives.counts(), n_c)


def _rank_exhaustive(
    s: torch.Tensor, k: int, positives: Positives, start: int, stop: int, cand_idx: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Best ranks and top-k relevance from full (q, C) masks: any scores, NaN and ties included."""
    unscorable = ~torch.isfinite(s)
    key = s.masked_fill(unscorable, -torch.inf)  # unscorable after every finite score
    relevant = positives.chunk(start, stop) & ~unscorable  # (q, C)
    best = _best_ranks(key, relevant, cand_idx).numpy()
    top = relevant.gather(1, _top_k_lower_index_wins(key, k)).numpy() if k else np.zeros((len(s), 0), bool)
    return best, top


def _rank_finite(
    s: torch.Tensor, k: int, positives: Positives, start: int, stop: int, cand_idx: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """The result of :func:`_rank_exhaustive` for finite scores: queries with at most
    ``_MAX_COUNTED`` positives by :func:`_rank_by_counting`, the others by :func:`_rank_top_k`."""
    many = positives.counts()[start:stop] > _MAX_COUNTED
    if not many.any():
        return _rank_by_counting(s, k, positives, start, stop)
    if many.all():
        return _rank_top_k(s, k, positives, start, stop, cand_idx)
    best, top = np.empty(len(s), np.int64), np.zeros((len(s), k), bool)
    rows = np.flatnonzero(many)
    sub = positives.subset(rows + start)
    best[rows], top[rows] = _rank_top_k(s[torch.from_numpy(rows)], k, sub, 0, len(rows), cand_idx)
    rows = np.flatnonzero(~many)
    sub = positives.subset(rows + start)
    best[rows], top[rows] = _rank_by_counting(s[torch.from_numpy(rows)], k, sub, 0, len(rows))
    return best, top


def _rank_by_counting(
    s: torch.Tensor, k: int, positives: Positives, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ranks of every positive of finite scores, by counting: no top-k, no sort.

    Positive ``p`` of a query is at place ``#{c: S_c > S_p} + #{c < p: S_c = S_p}`` of its
    ranking, so the first k places hold exactly the positives whose rank is below k. Each positive
    costs two comparisons of its score with the query's C scores (the index term only for a
    positive tied with another candidate); NumPy's compare-and-sum is used as it is several times
    faster than torch's for this on CPU.
    """
    scores = s.numpy()  # (q, C), shares memory
    n_q, n_c = scores.shape
    rows_t, cand_t = positives.pairs(start, stop)
    rows, cand = rows_t.numpy(), cand_t.numpy()
    n_pos = np.bincount(rows, minlength=n_q)
    slot = np.arange(len(rows)) - np.repeat(np.cumsum(n_pos) - n_pos, n_pos)  # place within the row
    rank = np.empty(len(rows), np.int64)
    for j in range(int(n_pos.max()) if len(rows) else 0):
        at = np.flatnonzero(slot == j)  # the j-th positive of every query that has one
        q = rows[at]
        block = scores if len(q) == n_q else scores[q]  # (q', C)
        p_score = scores[q, cand[at]][:, None]  # (q', 1)
        above = (block > p_score).sum(1)
        tied = np.flatnonzero((block == p_score).sum(1) > 1)  # another candidate shares the score
        if len(tied):
            before = np.arange(n_c) < cand[at[tied], None]
            above[tied] += ((block[tied] == p_score[tied]) & before).sum(1)
        rank[at] = above
    best = np.full(n_q, n_c, np.int64)
    np.minimum.at(best, rows, rank)
    top = np.zeros((n_q, k), bool)
    inside = rank < k
    top[rows[inside], rank[inside]] = True
    return best, top


def _rank_top_k(
    s: torch.Tensor, k: int, positives: Positives, start: int, stop: int, cand_idx: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """The same result as :func:`_rank_exhaustive` for finite scores, without (q, C) masks.

    ``torch.topk(k + 1)`` gives the first k places; when the (k+1)-th value is below the k-th, no
    tie crosses the cut and only equal scores inside the list need reordering by index (a stable
    sort by score of the index-sorted list). Rows with a tie across the cut, and rows whose best
    positive is beyond place k (its rank needs a count over all candidates), go through
    :func:`_rank_exhaustive`.
    """
    n_c = s.shape[1]
    vals, idx = torch.topk(s, min(k + 1, n_c), dim=1)
    crowded = vals[:, k - 1] == vals[:, k] if n_c > k else torch.zeros(len(s), dtype=torch.bool)
    idx = idx[:, :k].sort(dim=1).values  # ascending index, then a stable sort by score
    top_idx = idx.gather(1, torch.sort(s.gather(1, idx), dim=1, descending=True, stable=True).indices)
    top = positives.member(start, stop, top_idx)  # (q, K)
    found = top.any(1)
    best = torch.where(found, top.to(torch.int8).argmax(1), n_c).numpy()
    redo = (crowded | (~found & torch.from_numpy(positives.counts()[start:stop] > 0))).nonzero().squeeze(1)
    top_np = top.numpy()
    if len(redo):  # ties at the cut, or the best positive beyond place k: all such rows at once
        rows = redo.numpy()
        b, t = _rank_exhaustive(s[redo], k, positives.subset(rows + start), 0, len(rows), cand_idx)
        best[rows], top_np[rows] = b, t
    return best, top_np


def _best_ranks(key: torch.Tensor, relevant: torch.Tensor, cand_idx: torch.Tensor) -> torch.Tensor:
    """(q,) rank of the first relevant candidate under the lower-index-wins rule; C when none."""
    b = torch.where(relevant, key, torch.tensor(-torch.inf)).max(1, keepdim=True).values  # (q, 1)
    at_b = relevant & (key == b)
    n_c = key.shape[1]
    first = torch.where(at_b, cand_idx, n_c).min(1, keepdim=True).values  # lowest index among them
    rank = (key > b).sum(1) + ((key == b) & (cand_idx < first)).sum(1)
    return torch.where(relevant.any(1), rank, n_c)


def _top_k_lower_index_wins(key: torch.Tensor, k: int) -> torch.Tensor:
    """(q, k) candidate indices of the first k places, ties at equal score ordered by index.

    ``torch.topk`` leaves the order of equal scores unspecified, so only its values are used: the
    k-th value is the cut, every score above it is in, and among scores equal to it the lowest
    indices fill the remaining places.
    """
    cut = torch.topk(key, k, dim=1).values[:, -1:]  # (q, 1)
    above = key > cut
    at_cut = key == cut
    room = k - above.sum(1, keepdim=True)  # places left for scores equal to the cut
    crowded = (at_cut.sum(1, keepdim=True) > room).squeeze(1)
    if crowded.any():  # more ties at the cut than places: keep the lowest indices
        rows = crowded.nonzero().squeeze(1)
        at_cut[rows] &= at_cut[rows].cumsum(1) <= room[rows]
    chosen = (above | at_cut).nonzero()[:, 1].view(-1, k)  # ascending index within each row
    order = torch.sort(key.gather(1, chosen), dim=1, descending=True, stable=True).indices
    return chosen.gather(1, order)
