"""Prediction tasks and label encoding with missing labels.

A model predicts several tasks at once. Each :class:`TaskSpec` names its label column, its kind
(``multiclass``, ``multilabel`` or ``regression``), its classes and its loss weight. Labels may be
missing per task (None or NaN); missing labels are masked out of the loss, never imputed. Data
checks, training and evaluation all import this module; the heads and losses that use it live in
:mod:`modalign.fusion.heads`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from modalign.errors import ConfigError, DataError

KINDS = ("multiclass", "multilabel", "regression")


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task.

    Attributes:
        name: task name (key of logits and metrics).
        kind: ``multiclass`` (one class per row, softmax), ``multilabel`` (a set of classes per
            row, sigmoid per class) or ``regression`` (one float).
        column: label column in the data; defaults to ``name``.
        classes: class values in output order (classification); None for regression, or to be
            filled from training labels by :func:`infer_classes`.
        weight: loss weight.
    """

    name: str
    kind: str = "multiclass"
    column: str | None = None
    classes: tuple | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"task {self.name!r}: kind {self.kind!r} is not one of {KINDS}")
        if self.weight < 0:
            raise ConfigError(f"task {self.name!r}: weight must be >= 0, got {self.weight}")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(self.classes))
            if len(set(self.classes)) != len(self.classes):
                raise ConfigError(f"task {self.name!r}: duplicate classes {self.classes}")

    @property
    def label_column(self) -> str:
        return self.name if self.column is None else self.column

    @property
    def num_outputs(self) -> int:
        """Output width C of the task's head."""
        if self.kind == "regression":
            return 1
        if self.classes is None:
            raise ConfigError(f"task {self.name!r} needs classes (give them or call infer_classes)")
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["classes"] = None if self.classes is None else list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskSpec:
        return cls(**dict(d))


@dataclass(frozen=True)
class Target:
    """Encoded labels of one task.

    Attributes:
        y: (B,) long class index (multiclass), (B, C) float multi-hot (multilabel) or (B,) float
            (regression); arbitrary values where ``mask`` is False.
        mask: (B,) bool, True where the label is known.
    """

    y: torch.Tensor
    mask: torch.Tensor


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _is_class(v: Any) -> bool:
    """A value that can be a class: one string or number (a list or an object cannot)."""
    return isinstance(v, (str, int, float)) or (hasattr(v, "item") and getattr(v, "ndim", 1) == 0)


def _is_class_set(v: Any) -> bool:
    """A multilabel value: a list of classes (a string is not a set of its characters)."""
    return isinstance(v, (list, tuple)) and all(_is_class(c) for c in v)


def _class_index(spec: TaskSpec, v: Any, row: int) -> int:
    if spec.classes is None:
        raise ConfigError(f"task {spec.name!r} needs classes (give them or call infer_classes)")
    if not _is_class(v):
        raise DataError(
            f"label {v!r} of task {spec.name!r} is a {type(v).__name__}, not one class"
            + ("; a multilabel label is a list of classes" if spec.kind == "multilabel" else ""),
            reason="bad_label",
            row=row,
            column=spec.label_column,
        )
    classes = spec.classes
    if v in classes:
        return classes.index(v)
    # CSV/JSON round trips turn 1 into "1" or 1.0; accept when the text matches exactly one class.
    text = [str(c) for c in classes]
    key = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    if text.count(key) == 1:
        return text.index(key)
    raise DataError(
        f"label {v!r} of task {spec.name!r} is not a known class; known: {list(classes)}",
        reason="unknown_class",
        row=row,
        column=spec.label_column,
    )


def infer_classes(spec: TaskSpec, values: Sequence[Any]) -> TaskSpec:
    """Fill ``classes`` from training labels (sorted) when the spec has none.

    Values that cannot be labels of the task (a list for a multiclass task, a string for a
    multilabel one) are left out here; :func:`encode_targets` reports them with their row.
    """
    if spec.kind == "regression" or spec.classes is not None:
        return spec
    seen: set = set()
    for v in values:
        if _is_missing(v):
            continue
        if spec.kind == "multilabel":
            if _is_class_set(v):
                seen.update(c.item() if hasattr(c, "item") else c for c in v)
        elif _is_class(v):
            seen.add(v.item() if hasattr(v, "item") else v)
    if not seen:
        raise DataError(f"task {spec.name!r} has no labels to infer classes from", column=spec.label_column)
    try:
        classes = tuple(sorted(seen))
    except TypeError:  # numbers and strings mixed: no order between them
        raise DataError(
            f"task {spec.name!r} mixes label types ({sorted({type(v).__name__ for v in seen})}): "
            f"{sorted(map(repr, seen))[:10]}; write every label the same way, or give "
            "fusion.tasks[].classes",
            reason="bad_label",
            column=spec.label_column,
        ) from None
    return TaskSpec(spec.name, spec.kind, spec.column, classes, spec.weight)


def encode_targets(
    tasks: Sequence[TaskSpec], labels: Mapping[str, Sequence[Any]], row_offset: int = 0
) -> dict[str, Target]:
    """Encode label columns into tensors plus known-label masks.

    Args:
        tasks: task specs (classification tasks need ``classes``).
        labels: column -> list of B values (None/NaN = missing). A missing column means every
            label of that task is missing.
        row_offset: added to row numbers in error messages (position of this batch in the data).

    Returns:
        task name -> :class:`Target`.

    Raises:
        DataError: a label outside the known classes or a non-numeric regression label, naming
            the row and column.
    """
    b = max((len(v) for v in labels.values()), default=0)
    out: dict[str, Target] = {}
    for spec in tasks:
        col = labels.get(spec.label_column)
        vals: list[Any] = list(col) if col is not None else [None] * b
        mask = torch.tensor([not _is_missing(v) for v in vals], dtype=torch.bool)
        if spec.kind == "multiclass":
            y = torch.tensor(
                [0 if _is_missing(v) else _class_index(spec, v, row_offset + i) for i, v in enumerate(vals)],
                dtype=torch.long,
            )
        elif spec.kind == "multilabel":
            y = torch.zeros(len(vals), spec.num_outputs)
            for i, v in enumerate(vals):
                if _is_missing(v):
                    continue
                if not isinstance(v, (list, tuple)):
                    raise DataError(
                        f"label {v!r} of multilabel task {spec.name!r} is not a list of classes",
                        reason="bad_label",
                        row=row_offset + i,
                        column=spec.label_column,
                    )
                for c in v:
                    y[i, _class_index(spec, c, row_offset + i)] = 1.0
        else:
            ys = []
            for i, v in enumerate(vals):
                if _is_missing(v):
                    ys.append(0.0)
                    continue
                try:
                    ys.append(float(v))
                except (TypeError, ValueError, OverflowError):
                    raise DataError(
                        f"regression label {v!r} of task {spec.name!r} is not a number",
                        reason="bad_label",
                        row=row_offset + i,
                        column=spec.label_column,
                    ) from None
                if math.isinf(ys[-1]):
                    raise DataError(
                        f"regression label {v!r} of task {spec.name!r} is not finite",
                        reason="non_finite",
                        row=row_offset + i,
                        column=spec.label_column,
                    )
            y = torch.tensor(ys, dtype=torch.float32)
            mask = mask & ~torch.isnan(y)
        out[spec.name] = Target(y=y, mask=mask)
    return out


def decode_outputs(spec: TaskSpec, outputs: Any, threshold: float = 0.5) -> list[Any]:
    """Per row, what a task's outputs say in the label column's own values.

    Args:
        outputs: (N, C) probabilities (multiclass, multilabel) or (N, 1) values (regression), as
            :meth:`MultimodalModel.predict` returns them.
        threshold: probability from which a multilabel class is predicted.

    Returns:
        The most probable class (multiclass; ties go to the first), the list of classes at or
        above ``threshold`` (multilabel) or the float value (regression).
    """
    rows = [list(map(float, r)) for r in outputs]
    if spec.kind == "regression":
        return [r[0] for r in rows]
    classes = spec.classes
    if classes is None:
        raise ConfigError(f"task {spec.name!r} has no classes to name")
    if spec.kind == "multilabel":
        return [[c for c, p in zip(classes, r) if p >= threshold] for r in rows]
    return [classes[max(range(len(r)), key=r.__getitem__)] for r in rows]
