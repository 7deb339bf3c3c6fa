"""Checks of what callers hand the index: vectors, ids, metadata."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modalign.errors import ConfigError


def unit_rows(x: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim) or x.shape[1] == 0:
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ConfigError(f"{what} must have shape {want}, got {tuple(x.shape)}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise ConfigError(f"{what} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ConfigError(f"{what}: row {int(np.flatnonzero(~np.isfinite(x).all(1))[0])} is not finite")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ConfigError(f"{what}: row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


def check_items(
    ids: list[str], metadata: list[dict[str, Any]] | None, n: int, existing: Any
) -> list[dict[str, Any]]:
    ids = list(ids)
    if len(ids) != n:
        raise ConfigError(f"got {len(ids)} ids for {n} vectors")
    bad = [i for i in ids if not isinstance(i, str) or not i]
    if bad:
        raise ConfigError(f"ids must be non-empty strings, got {bad[0]!r}")
    if len(set(ids)) != n:
        raise ConfigError(f"ids repeat: {sorted({i for i in ids if ids.count(i) > 1})[:5]}")
    taken = [i for i in ids if i in existing]
    if taken:
        raise ConfigError(f"ids already in the index: {taken[:5]} (delete them first to replace)")
    if metadata is None:
        return [{} for _ in ids]
    metadata = list(metadata)
    if len(metadata) != n:
        raise ConfigError(f"got {len(metadata)} metadata rows for {n} vectors")
    for r, m in enumerate(metadata):
        if not isinstance(m, dict):
            raise ConfigError(f"metadata row {r} must be a dict, got {type(m).__name__}")
        check_json(m, f"metadata row {r}")
    return metadata


def check_json(obj: Any, what: str) -> None:
    try:
        json.dumps(obj, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{what} must be JSON (str, number, bool, null, list, dict): {e}") from None
