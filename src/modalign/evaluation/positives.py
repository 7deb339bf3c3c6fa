"""Which candidates are positives of which query: by shared keys (a label, a sample id) or by
index lists, served one query chunk at a time to the ranking (:mod:`modalign.evaluation.ranking`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from functools import cached_property

import numpy as np
import torch


class Positives:
    """Which candidates are positives of which query, served one query chunk at a time."""

    n_queries: int
    n_candidates: int

    def chunk(self, start: int, stop: int) -> torch.Tensor:  # pragma: no cover - interface
        """(stop - start, C) bool mask of the positives of queries ``start:stop``."""
        raise NotImplementedError

    def member(self, start: int, stop: int, cand: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """(stop - start, K) whether candidate ``cand[i, j]`` is a positive of query ``start + i``."""
        raise NotImplementedError

    def pairs(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:  # pragma: no cover
        """(query - start, candidate) of every positive of queries ``start:stop``, two (P,) int64
        tensors ordered by query, then by candidate."""
        raise NotImplementedError

    def transposed(self) -> Positives:  # pragma: no cover - interface
        """The same relation with candidates as queries (the reverse retrieval direction)."""
        raise NotImplementedError

    def subset(self, rows: np.ndarray) -> Positives:  # pragma: no cover - interface
        """Only the queries ``rows`` (in that order)."""
        raise NotImplementedError

    def counts(self) -> np.ndarray:  # pragma: no cover - interface
        """(Q,) number of positives of each query."""
        raise NotImplementedError


class KeyPositives(Positives):
    """A candidate is a positive of a query when their keys are equal (same id, same label)."""

    def __init__(self, query_keys: Sequence[Hashable], candidate_keys: Sequence[Hashable]) -> None:
        codes: dict[Hashable, int] = {}
        self.qk = torch.tensor([codes.setdefault(k, len(codes)) for k in query_keys], dtype=torch.int64)
        self.ck = torch.tensor([codes.setdefault(k, len(codes)) for k in candidate_keys], dtype=torch.int64)
        self.n_queries, self.n_candidates = len(self.qk), len(self.ck)
        self._n_codes = len(codes)

    def chunk(self, start: int, stop: int) -> torch.Tensor:
        return self.qk[start:stop, None] == self.ck[None, :]

    def member(self, start: int, stop: int, cand: torch.Tensor) -> torch.Tensor:
        return self.qk[start:stop, None] == self.ck[cand]

    @cached_property
    def _by_key(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidate indices grouped by key (ascending index within a key), and their keys."""
        order = torch.argsort(self.ck, stable=True)
        return order, self.ck[order]

    def pairs(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        by_key, keys = self._by_key
        q = self.qk[start:stop]
        lo = torch.searchsorted(keys, q)
        n = torch.searchsorted(keys, q, right=True) - lo  # (q,) positives of each query
        rows = torch.repeat_interleave(torch.arange(stop - start), n)
        return rows, by_key[torch.from_numpy(_ranges(lo.numpy(), n.numpy()))]

    def _with(self, qk: torch.Tensor, ck: torch.Tensor) -> KeyPositives:
        out = KeyPositives([], [])
        out.qk, out.ck, out._n_codes = qk, ck, self._n_codes
        out.n_queries, out.n_candidates = len(qk), len(ck)
        return out

    def transposed(self) -> KeyPositives:
        return self._with(self.ck, self.qk)

    def subset(self, rows: np.ndarray) -> KeyPositives:
        return self._with(self.qk[torch.from_numpy(np.asarray(rows, np.int64))], self.ck)

    def counts(self) -> np.ndarray:
        per_code = np.bincount(self.ck.numpy(), minlength=self._n_codes)
        return per_code[self.qk.numpy()] if self.n_queries else np.zeros(0, np.int64)


class IndexPositives(Positives):
    """Positives as candidate-index lists per query (CSR: ``indptr`` (Q + 1,), ``indices``)."""

    def __init__(self, lists: Sequence[Sequence[int]], n_candidates: int) -> None:
        sets = [sorted({int(i) for i in lst}) for lst in lists]
        bad = [(q, i) for q, s in enumerate(sets) for i in s if not 0 <= i < n_candidates]
        if bad:
            q, i = bad[0]
            raise ValueError(
                f"positives: query {q} lists candidate {i}, outside 0..{n_candidates - 1} "
                f"({len(bad)} such entries)"
            )
        self.indptr = np.concatenate([[0], np.cumsum([len(s) for s in sets])]).astype(np.int64)
        self.indices = torch.tensor([i for s in sets for i in s], dtype=torch.int64)
        self.n_queries, self.n_candidates = len(sets), n_candidates

    def pairs(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        rows = torch.repeat_interleave(
            torch.arange(stop - start), torch.from_numpy(np.diff(self.indptr[start : stop + 1]))
        )
        return rows, self.indices[lo:hi]

    def chunk(self, start: int, stop: int) -> torch.Tensor:
        mask = torch.zeros(stop - start, self.n_candidates, dtype=torch.bool)
        mask[self.pairs(start, stop)] = True
        return mask

    def member(self, start: int, stop: int, cand: torch.Tensor) -> torch.Tensor:
        # (query, candidate) pairs as one sorted int64 code each: membership by binary search
        rows, cols = self.pairs(start, stop)
        if len(rows) == 0:
            return torch.zeros(cand.shape, dtype=torch.bool)
        codes = rows * self.n_candidates + cols  # ascending (CSR order)
        wanted = (torch.arange(stop - start)[:, None] * self.n_candidates + cand).contiguous()  # (q, K)
        at = torch.searchsorted(codes, wanted).clamp_max(len(codes) - 1)
        return codes[at] == wanted

    def counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def subset(self, rows: np.ndarray) -> IndexPositives:
        rows = np.asarray(rows, np.int64)
        lengths = np.diff(self.indptr)[rows]
        out = IndexPositives([], self.n_candidates)
        out.indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out.indices = self.indices[torch.from_numpy(_ranges(self.indptr[rows], lengths))]
        out.n_queries = len(rows)
        return out

    def _lists(self) -> list[list[int]]:
        flat = self.indices.tolist()
        return [flat[self.indptr[q] : self.indptr[q + 1]] for q in range(self.n_queries)]

    def transposed(self) -> IndexPositives:
        lists: list[list[int]] = [[] for _ in range(self.n_candidates)]
        for q, cands in enumerate(self._lists()):
            for c in cands:
                lists[c].append(q)
        return IndexPositives(lists, self.n_queries)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concat(arange(s, s + n) for s, n in zip(starts, lengths))`` without a Python loop."""
    ends = np.cumsum(lengths)
    return np.repeat(np.asarray(starts, np.int64) - (ends - lengths), lengths) + np.arange(
        int(ends[-1]) if len(ends) else 0
    )


def as_positives(positives: object, n_queries: int, n_candidates: int) -> Positives:
    """A :class:`Positives` from a (Q, C) bool array, a list of index lists, or one already built.

    Raises:
        ValueError: wrong shape or length, or an index outside the candidates.
    """
    if isinstance(positives, Positives):
        p = positives
    elif isinstance(positives, (np.ndarray, torch.Tensor)) and positives.ndim == 2:
        arr = np.asarray(positives.cpu() if isinstance(positives, torch.Tensor) else positives)
        if arr.shape != (n_queries, n_candidates):
            raise ValueError(
                f"positives: a bool array of shape {arr.shape}, expected (queries, candidates) = "
                f"{(n_queries, n_candidates)}"
            )
        p = IndexPositives([np.flatnonzero(r).tolist() for r in arr.astype(bool)], n_candidates)
    else:
        p = IndexPositives(list(positives), n_candidates)  # type: ignore[call-overload]
    if (p.n_queries, p.n_candidates) != (n_queries, n_candidates):
        raise ValueError(
            f"positives cover {p.n_queries} queries x {p.n_candidates} candidates; the embeddings "
            f"have {n_queries} queries x {n_candidates} candidates"
        )
    return p
