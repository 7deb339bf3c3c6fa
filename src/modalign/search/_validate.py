"""Checks of what callers hand the index: vectors, ids, metadata."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modalign.errors import ConfigError


def unit_rows(x: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    """``x`` as ``(N, D)`` float32 unit rows (a new array); a clear error for what cannot be one."""
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim) or x.shape[1] == 0:
        want = f"(N, {dim})" if dim is not None else "(N, D)"
        raise ConfigError(f"{what} must have shape {want}, got {tuple(x.shape)}")
    if x.dtype.kind not in "fiu":
        raise ConfigError(f"{what} must be real numbers, got dtype {x.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x, dtype=np.float64))  # float64: no overflow
    if not (np.isfinite(norms).all() and norms.all()):  # the slow path only to name the row
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if len(bad):
            raise ConfigError(f"{what}: row {int(bad[0])} is not finite")
        raise ConfigError(f"{what}: row {int(np.flatnonzero(norms == 0)[0])} is all zeros")
    return x / norms[:, None].astype(np.float32)


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
