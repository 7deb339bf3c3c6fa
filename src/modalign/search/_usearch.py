"""The usearch side of :class:`~modalign.search.Index` (``kind="usearch"``): an HNSW graph by
usearch, keys = the index's internal rows, inner product on unit vectors.

usearch's Python search takes no row filter, so a filtered search asks for more candidates than
``k`` (``k`` over the share of allowed rows, times 2) and keeps the allowed ones; a query still
short of ``k`` is then scored exactly by the Index (so exactly ``k`` hits come back whenever they
exist). Most filters never get here: the Index scores small matching sets exactly first.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modalign.errors import ConfigError

DEFAULTS: dict[str, Any] = {"m": 32, "ef_construction": 64, "ef_search": 64}


def resolve_params(dim: int, n: int, params: dict[str, Any]) -> dict[str, Any]:
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ConfigError(
            f"unknown parameter(s) {sorted(unknown)} for a usearch index; known: {', '.join(DEFAULTS)}"
        )
    out = {**DEFAULTS, **params}
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"usearch parameter {name} must be a positive integer, got {value!r}")
    return out


def _new(dim: int, params: dict[str, Any]) -> Any:
    try:
        from usearch.index import Index as USearchIndex
    except ImportError:
        raise ConfigError(
            "kind='usearch' needs the usearch package: pip install 'modalign[usearch]'"
        ) from None
    return USearchIndex(
        ndim=dim,
        metric="ip",
        dtype="f32",
        connectivity=params["m"],
        expansion_add=params["ef_construction"],
        expansion_search=params["ef_search"],
    )


def build(dim: int, params: dict[str, Any], vectors: np.ndarray) -> Any:
    index = _new(dim, params)
    add(index, vectors, 0)
    return index


def add(index: Any, vectors: np.ndarray, start: int) -> None:
    if len(vectors):
        index.add(np.arange(start, start + len(vectors), dtype=np.uint64), vectors)


def size(index: Any) -> tuple[int, int]:
    return len(index), index.ndim


def to_bytes(index: Any) -> bytes:
    return bytes(index.save())


def from_bytes(data: bytes, dim: int, params: dict[str, Any]) -> Any:
    index = _new(dim, params)
    index.load(data)
    return index


def search(
    index: Any, params: dict[str, Any], queries: np.ndarray, k: int, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)`` each ``(Q, k)`` (cosines; rows ``-1`` where fewer were found)."""
    n = len(index)
    share = 1.0 if allowed is None else max(float(allowed.mean()), 1.0 / max(n, 1))
    fetch = min(n, int(np.ceil(k / share)) * (1 if allowed is None else 2))
    index.expansion_search = max(params["ef_search"], fetch)
    found = index.search(queries, fetch)
    keys = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
    dist = np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)
    scores, rows = 1.0 - dist, keys  # usearch's "ip" distance is 1 - inner product
    counts = np.asarray(getattr(found, "counts", [keys.shape[1]])).reshape(-1, 1)  # one query: Matches
    valid = (np.arange(keys.shape[1])[None, :] < counts) & (keys >= 0)
    if allowed is not None:
        valid &= allowed[np.where(valid, keys, 0)]
    out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    out_r = np.full((len(queries), k), -1, dtype=np.int64)
    for i in range(len(queries)):
        keep = np.flatnonzero(valid[i])[:k]
        out_s[i, : len(keep)], out_r[i, : len(keep)] = scores[i, keep], rows[i, keep]
    return out_s, out_r
