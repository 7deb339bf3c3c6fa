"""The FAISS side of :class:`~modalign.search.Index`: build each kind, search with a row selector.

FAISS row numbers are the index's internal rows (0..N-1, in the order vectors were added); the
Index maps them to ids, so no ``IndexIDMap`` is needed. Every kind uses inner product on unit
vectors (cosine).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

from modalign.errors import ConfigError

KINDS = ("flat", "hnsw", "ivfpq")
DEFAULTS: dict[str, dict[str, Any]] = {
    "flat": {},
    # FAISS's own defaults are M 32 / efConstruction 40 / efSearch 16; ef 64 keeps recall@10 near 1.
    "hnsw": {"m": 32, "ef_construction": 64, "ef_search": 64},
    # nlist/m None: chosen from N and D at build (see resolve_params); refine: candidates per hit
    # re-scored exactly from the stored vectors, so scores are true cosines.
    "ivfpq": {"nlist": None, "m": None, "nbits": 8, "nprobe": 16, "refine": 4},
}


def resolve_params(kind: str, dim: int, n: int, params: dict[str, Any]) -> dict[str, Any]:
    """The kind's parameters with defaults filled in; unknown names or bad values raise ConfigError."""
    unknown = set(params) - set(DEFAULTS[kind])
    if unknown:
        known = ", ".join(DEFAULTS[kind]) or "none"
        raise ConfigError(f"unknown parameter(s) {sorted(unknown)} for a {kind} index; known: {known}")
    out = {**DEFAULTS[kind], **params}
    if kind == "ivfpq":
        if out["nlist"] is None:
            out["nlist"] = int(max(1, min(4 * round(n**0.5), n // 39)))  # ~39 training points per list
        if out["m"] is None:
            out["m"] = next(m for m in (dim // 4, dim // 8, dim // 2, dim) if m >= 1 and dim % m == 0)
        if dim % out["m"] != 0:
            raise ConfigError(f"ivfpq: m={out['m']} must divide the dimension {dim}")
        if n < 2 ** out["nbits"]:
            raise ConfigError(
                f"ivfpq needs at least {2 ** out['nbits']} vectors to train (got {n}); "
                "use kind='flat' for small corpora"
            )
    for name, value in out.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{kind} parameter {name} must be a positive integer, got {value!r}")
    return out


def build(kind: str, dim: int, params: dict[str, Any], vectors: np.ndarray) -> Any:
    """A FAISS index of ``kind`` holding ``vectors`` ``(N, D)`` (rows 0..N-1)."""
    import faiss

    index: Any
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params["ef_construction"]
    else:
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, params["nlist"], params["m"], params["nbits"])
        index.metric_type = faiss.METRIC_INNER_PRODUCT
        index.train(vectors)
    if len(vectors):
        index.add(vectors)
    return index


def to_bytes(index: Any) -> bytes:
    import faiss

    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> Any:
    import faiss

    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def search(
    index: Any, kind: str, params: dict[str, Any], queries: np.ndarray, k: int, allowed: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)`` each ``(Q, k)``; rows ``-1`` where fewer were found.

    ``allowed`` ``(N,)`` bool restricts the search to those rows inside FAISS (an
    ``IDSelectorBitmap``), so the graph/list walk itself skips the others.
    """
    if allowed is None:
        return index.search(queries, k, params=_plain_params(kind, params, k))
    faiss: Any = importlib.import_module("faiss")  # Any: its stubs miss the search parameters
    bitmap = np.packbits(allowed, bitorder="little")  # FAISS reads bit i of byte i >> 3
    sp = _new_params(faiss, kind, params, k)
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
    sp.sel = selector  # SWIG keeps a raw pointer: the locals keep selector and bitmap alive
    scores, rows = index.search(queries, k, params=sp)
    del selector, bitmap
    return scores, rows


_PLAIN: dict[tuple[str, int, int], Any] = {}  # unfiltered search parameters, reused across calls


def _plain_params(kind: str, params: dict[str, Any], k: int) -> Any:
    if kind == "flat":
        return None
    key = (kind, params["ef_search"] if kind == "hnsw" else params["nprobe"], k)
    if key not in _PLAIN:
        _PLAIN[key] = _new_params(importlib.import_module("faiss"), kind, params, k)
    return _PLAIN[key]


def _new_params(faiss: Any, kind: str, params: dict[str, Any], k: int) -> Any:
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=max(params["ef_search"], k))
    if kind == "ivfpq":
        return faiss.SearchParametersIVF(nprobe=params["nprobe"])
    return faiss.SearchParameters()
