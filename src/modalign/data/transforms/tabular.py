"""Tabular transform: standardised numeric columns (+ missing indicators) and indexed categories.

A payload is a dict ``{column: value}`` (built from the manifest's columns) or, for a modality held in
one column, a list of numbers. NaN/None count as missing: the feature becomes 0 after standardisation
and its missing indicator 1; a row with every value missing is an absent modality (``load`` -> None).
Output (2 * n_numeric + n_categorical,) float32: ``[scaled values, missing flags, category indices]``
(without the flags when ``missing_flags`` is off);
category index 0 means missing or unseen in training.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from modalign.data.manifest import is_missing
from modalign.data.transforms.base import Transform
from modalign.errors import CheckpointError, ConfigError, DataError
from modalign.io import atomic_write_json


class TabularTransform(Transform):
    """Standardise numeric features with training statistics; index categorical ones.

    Args:
        numeric: numeric column names; ``()`` for a modality held in one list-of-numbers column
            (the list's length, fixed by the training split, is then the numeric width).
        categorical: categorical column names.
        scaling: ``standard`` ((x - mean) / std), ``minmax`` ((x - min) / (max - min)) with
            training statistics (a constant feature is only shifted), or ``none`` (raw values).
        missing_flags: append one 0/1 missing indicator per numeric feature.
    """

    kind = "tabular"

    def __init__(
        self,
        numeric: tuple[str, ...] = (),
        categorical: tuple[str, ...] = (),
        scaling: str = "standard",
        missing_flags: bool = True,
    ):
        if scaling not in ("standard", "minmax", "none"):
            raise ConfigError(f"tabular scaling must be standard, minmax or none, got {scaling!r}")
        self.numeric = tuple(numeric)
        self.categorical = tuple(categorical)
        self.scaling, self.missing_flags = scaling, bool(missing_flags)
        self.mean: list[float] = []
        self.std: list[float] = []
        self.vocab: dict[str, dict[str, int]] = {c: {} for c in self.categorical}
        self.width = len(self.numeric)

    def _split(self, payload: Any) -> tuple[list[Any], list[Any]]:
        if isinstance(payload, dict):
            return [payload.get(c) for c in self.numeric], [payload.get(c) for c in self.categorical]
        if isinstance(payload, (list, tuple)) and not self.categorical:
            return list(payload), []
        raise DataError(
            f"expected a row of values or a list of numbers, got {type(payload).__name__}",
            reason="wrong_type",
        )

    def _numbers(self, values: list[Any]) -> list[float]:
        out = []
        for name, v in zip(self.numeric or range(len(values)), values):
            if is_missing(v):
                out.append(math.nan)
                continue
            column = name if isinstance(name, str) else None  # a manifest column, not a list index
            if isinstance(v, bool) or not isinstance(v, (int, float, str)):
                raise DataError(
                    f"feature {name!r} is not a number: {v!r}", reason="wrong_type", column=column
                )
            try:
                x = float(v)
            except (ValueError, OverflowError):
                raise DataError(
                    f"feature {name!r} is not a number: {v!r}", reason="wrong_type", column=column
                ) from None
            if math.isinf(x):
                raise DataError(f"feature {name!r} is infinite ({v!r})", reason="non_finite", column=column)
            out.append(x)
        return out

    def fit(self, payloads: list[Any]) -> None:
        """Statistics of the good payloads; a bad one (text, inf, another length) is left out here
        and reported with its row when it is loaded. Without named features and with objects as
        payloads (a nested object), the features are inferred first (:func:`infer_features`)."""
        if not self.numeric and not self.categorical and any(isinstance(p, dict) for p in payloads):
            self.numeric, self.categorical = infer_features([p for p in payloads if isinstance(p, dict)])
            if not self.numeric and not self.categorical:
                raise DataError(
                    "the objects hold no field of numbers or categories (fields holding lists or "
                    "objects are left out): name the features in transform.numeric / categorical",
                    reason="no_features",
                )
            self.vocab = {c: {} for c in self.categorical}
            self.width = len(self.numeric)
        rows = []
        for p in payloads:
            try:
                rows.append(self._numbers(self._split(p)[0]))
            except DataError:
                continue
        if not self.numeric and rows:
            self.width = len(rows[0])
        rows = [r for r in rows if len(r) == self.width]
        cols = list(zip(*rows)) if rows else [()] * self.width
        # ``mean``/``std`` hold the shift and scale of any scaling: z = (x - mean) / std.
        self.mean, self.std = [], []
        for name, col in zip(self.numeric or range(len(cols)), cols):
            seen = [x for x in col if not math.isnan(x)]
            if self.scaling == "none" or not seen:
                shift, scale = 0.0, 1.0
            elif self.scaling == "minmax":
                shift, scale = min(seen), max(seen) - min(seen)
            else:
                shift, scale = _mean_std(seen)
            if not (math.isfinite(shift) and math.isfinite(scale)):
                raise DataError(
                    f"feature {name!r}: its values span more than a float64 holds "
                    f"({min(seen):g} to {max(seen):g}); rescale the column",
                    reason="non_finite",
                    column=name if isinstance(name, str) else None,
                )
            self.mean.append(shift)
            self.std.append(scale if scale > 0 else 1.0)
        cats = []
        for p in payloads:
            try:
                cats.append(self._split(p)[1])
            except DataError:
                continue
        for i, c in enumerate(self.categorical):
            values = sorted({str(v) for row in cats if not is_missing(v := row[i])})
            self.vocab[c] = {v: j + 1 for j, v in enumerate(values)}

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor | None:
        nums, cats = self._split(payload)
        x = self._numbers(nums)
        if len(x) != self.width:
            raise DataError(f"expected {self.width} numbers, got {len(x)}", reason="wrong_shape")
        if all(math.isnan(v) for v in x) and all(is_missing(c) for c in cats):
            return None
        z = [0.0 if math.isnan(v) else (v - m) / s for v, m, s in zip(x, self.mean, self.std)]
        flags = [1.0 if math.isnan(v) else 0.0 for v in x] if self.missing_flags else []
        idx = [
            0.0 if is_missing(v) else float(self.vocab[c].get(str(v), 0))
            for c, v in zip(self.categorical, cats)
        ]
        out = torch.tensor(z + flags + idx, dtype=torch.float32)
        if not bool(torch.isfinite(out).all()):
            raise DataError(
                f"a feature is too large for float32 after scaling: {x}; rescale the column",
                reason="non_finite",
            )
        return out

    def placeholder(self) -> torch.Tensor:
        flags = self.width if self.missing_flags else 0
        return torch.zeros(self.width + flags + len(self.categorical))

    def settings(self) -> dict[str, Any]:
        return {
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "scaling": self.scaling,
            "missing_flags": self.missing_flags,
        }

    def save_state(self, directory: Path, name: str) -> None:
        state = {"mean": self.mean, "std": self.std, "vocab": self.vocab, "width": self.width}
        atomic_write_json(directory / f"normalizer-{name}.json", state)

    def load_state(self, directory: Path, name: str) -> None:
        path = directory / f"normalizer-{name}.json"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read normaliser {path}: {e}") from None
        self.mean, self.std = list(state["mean"]), list(state["std"])
        self.vocab = {c: dict(v) for c, v in state["vocab"].items()}
        self.width = int(state["width"])

    def encoder_kwargs(self) -> dict[str, Any]:
        return {
            "n_numeric": self.width,
            "cardinalities": [len(self.vocab[c]) + 1 for c in self.categorical],
            "missing_flags": self.missing_flags,
        }


def infer_features(objects: list[dict[str, Any]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numeric, categorical) field names of ``objects``, in first-seen order.

    A field whose present values are all numbers (or strings that parse as finite numbers, as CSV
    and some JSON exports write them) is numeric; one of strings, booleans or a mix of those with
    numbers is categorical; a field holding lists or objects is left out (name it in
    ``transform.numeric`` / ``categorical`` or give it its own modality).
    """
    numeric: list[str] = []
    categorical: list[str] = []
    for key in dict.fromkeys(k for o in objects for k in o):
        seen = [v for o in objects if not is_missing(v := o.get(key))]
        if not seen or any(isinstance(v, (list, dict)) for v in seen):
            continue
        (numeric if all(_is_number(v) for v in seen) else categorical).append(key)
    return tuple(numeric), tuple(categorical)


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    try:
        return isinstance(v, str) and math.isfinite(float(v))
    except ValueError:
        return False


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population std; values near the float64 limit are scaled first (no overflow)."""
    try:
        shift = sum(values) / len(values)
        if math.isfinite(shift):
            return shift, math.sqrt(sum((x - shift) ** 2 for x in values) / len(values))
    except OverflowError:
        pass
    m = max(abs(x) for x in values)  # > 0: the plain sums overflowed
    shift = m * (sum(x / m for x in values) / len(values))
    return shift, m * math.sqrt(sum((x / m - shift / m) ** 2 for x in values) / len(values))
