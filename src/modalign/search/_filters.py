"""Metadata filters compiled to a boolean row mask, from columns kept per field.

A filter is a dict of ``field -> condition``; every condition must hold (AND):

- ``{"split": "test"}``: equality (type-exact: ``1`` matches neither ``True`` nor ``"1"``);
- ``{"label": ["cat", "dog"]}``: any of the values;
- ``{"year": {"gte": 2000, "lt": 2010}}``: a range (``gt``, ``gte``, ``lt``, ``lte``) over numbers,
  or ``{"eq": v}``, ``{"ne": v}``, ``{"in": [...]}``.

A row without the field never matches. Columns are built on first use and extended as rows are
added, so a filtered search over N rows costs a few NumPy passes, not N dict lookups.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from modalign.errors import ConfigError

_RANGE_OPS = {"gt", "gte", "lt", "lte"}
_OPS = _RANGE_OPS | {"eq", "ne", "in"}
_MISSING = -1  # code of a row that lacks the field (or was deleted)


def value_key(value: Any) -> str:
    """A key telling values apart by type and value (``1``, ``True`` and ``"1"`` differ)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class MetadataColumns:
    """Per-field codes and numbers for the rows of an index, extended lazily as rows are added."""

    def __init__(self) -> None:
        self._vocab: dict[str, dict[str, int]] = {}
        self._codes: dict[str, np.ndarray] = {}
        self._numbers: dict[str, np.ndarray] = {}

    def reset(self) -> None:
        self._vocab.clear()
        self._codes.clear()
        self._numbers.clear()

    def codes(self, field: str, rows: list[dict[str, Any] | None]) -> tuple[dict[str, int], np.ndarray]:
        vocab = self._vocab.setdefault(field, {})
        done = self._codes.get(field, np.empty(0, dtype=np.int64))
        if len(done) < len(rows):
            new = [
                _MISSING
                if meta is None or field not in meta
                else vocab.setdefault(value_key(meta[field]), len(vocab))
                for meta in rows[len(done) :]
            ]
            done = self._codes[field] = np.concatenate([done, np.asarray(new, dtype=np.int64)])
        return vocab, done

    def numbers(self, field: str, rows: list[dict[str, Any] | None]) -> np.ndarray:
        done = self._numbers.get(field, np.empty(0, dtype=np.float64))
        if len(done) < len(rows):
            new = [_number(None if meta is None else meta.get(field)) for meta in rows[len(done) :]]
            done = self._numbers[field] = np.concatenate([done, np.asarray(new, dtype=np.float64)])
        return done


def _number(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


def compile_filter(
    where: dict[str, Any], rows: list[dict[str, Any] | None], columns: MetadataColumns
) -> np.ndarray:
    """The rows ``(N,)`` bool whose metadata satisfies every condition of ``where``.

    Raises:
        ConfigError: the filter is not a dict of conditions, or uses an unknown operator.
    """
    if not isinstance(where, dict):
        raise ConfigError(f"filter must be a dict of field -> condition, got {type(where).__name__}")
    mask = np.ones(len(rows), dtype=bool)
    for field, cond in where.items():
        if isinstance(cond, dict):
            unknown = set(cond) - _OPS
            if unknown or not cond:
                raise ConfigError(
                    f"filter on {field!r}: unknown operator(s) {sorted(unknown)}; use {sorted(_OPS)}"
                )
            for op, arg in cond.items():
                mask &= _condition(field, op, arg, rows, columns)
        elif isinstance(cond, list):
            mask &= _condition(field, "in", cond, rows, columns)
        else:
            mask &= _condition(field, "eq", cond, rows, columns)
    return mask


def _condition(
    field: str, op: str, arg: Any, rows: list[dict[str, Any] | None], columns: MetadataColumns
) -> np.ndarray:
    if op in _RANGE_OPS:
        if isinstance(arg, bool) or not isinstance(arg, (int, float)):
            raise ConfigError(f"filter on {field!r}: {op} needs a number, got {arg!r}")
        x = columns.numbers(field, rows)
        with np.errstate(invalid="ignore"):  # NaN (not a number) never matches
            return {"gt": x > arg, "gte": x >= arg, "lt": x < arg, "lte": x <= arg}[op]
    vocab, codes = columns.codes(field, rows)
    if op == "in":
        if not isinstance(arg, list):
            raise ConfigError(f"filter on {field!r}: 'in' needs a list of values, got {arg!r}")
        wanted = [vocab[k] for k in map(value_key, arg) if k in vocab]
        return np.isin(codes, np.asarray(wanted, dtype=np.int64))
    code = vocab.get(value_key(arg))
    if op == "eq":
        return codes == code if code is not None else np.zeros(len(codes), dtype=bool)
    return (codes != _MISSING) & (codes != (code if code is not None else _MISSING))  # ne
