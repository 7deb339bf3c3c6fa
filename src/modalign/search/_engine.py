"""The approximate-search engine behind an Index, by kind: FAISS (flat, hnsw, ivfpq) or usearch.

The Index owns rows, ids, metadata, the journal and snapshots; an engine only maps unit vectors
at rows 0..N-1 to nearest rows. Each function dispatches on ``kind``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modalign.errors import ConfigError
from modalign.search import _faiss, _usearch

KINDS = (*_faiss.KINDS, "usearch", "qdrant")  # qdrant: a whole Index of its own (qdrant.py)


def resolve_params(kind: str, dim: int, n: int, params: dict[str, Any]) -> dict[str, Any]:
    if kind == "usearch":
        return _usearch.resolve_params(dim, n, params)
    if kind not in _faiss.KINDS:
        raise ConfigError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)}")
    return _faiss.resolve_params(kind, dim, n, params)


def build(kind: str, dim: int, params: dict[str, Any], vectors: np.ndarray) -> Any:
    if kind == "usearch":
        return _usearch.build(dim, params, vectors)
    return _faiss.build(kind, dim, params, vectors)


def add(kind: str, engine: Any, vectors: np.ndarray, start: int) -> None:
    """Append ``vectors`` as rows ``start..``."""
    if kind == "usearch":
        _usearch.add(engine, vectors, start)
    else:
        engine.add(vectors)


def size(kind: str, engine: Any) -> tuple[int, int]:
    """``(rows, dim)`` the engine holds."""
    return _usearch.size(engine) if kind == "usearch" else (engine.ntotal, engine.d)


def persisted(kind: str) -> bool:
    """Whether snapshots store the engine (a flat index is rebuilt from the vectors instead)."""
    return kind != "flat"


def to_bytes(kind: str, engine: Any) -> bytes:
    return _usearch.to_bytes(engine) if kind == "usearch" else _faiss.to_bytes(engine)


def from_bytes(kind: str, data: bytes, dim: int, params: dict[str, Any]) -> Any:
    if kind == "usearch":
        return _usearch.from_bytes(data, dim, params)
    return _faiss.from_bytes(data)


def search(
    kind: str, engine: Any, params: dict[str, Any], queries: np.ndarray, k: int, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    if kind == "usearch":
        return _usearch.search(engine, params, queries, k, allowed)
    return _faiss.search(engine, kind, params, queries, k, allowed)
