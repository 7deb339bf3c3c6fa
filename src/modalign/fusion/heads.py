"""Prediction tasks, label encoding with missing labels, task heads and masked task losses.

A model predicts several tasks at once. Each :class:`TaskSpec` names its label column, its kind
(``multiclass``, ``multilabel`` or ``regression``), its classes and its loss weight. Labels may be
missing per task (None or NaN); missing labels are masked out of the loss, never imputed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from modalign.errors import ConfigError, DataError
from modalign.types import LossOutput

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


def _class_index(spec: TaskSpec, v: Any, row: int) -> int:
    if spec.classes is None:
        raise ConfigError(f"task {spec.name!r} needs classes (give them or call infer_classes)")
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
    """Fill ``classes`` from training labels (sorted) when the spec has none."""
    if spec.kind == "regression" or spec.classes is not None:
        return spec
    seen: set = set()
    for v in values:
        if _is_missing(v):
            continue
        if spec.kind == "multilabel":
            seen.update(v)
        else:
            seen.add(v.item() if hasattr(v, "item") else v)
    if not seen:
        raise DataError(f"task {spec.name!r} has no labels to infer classes from", column=spec.label_column)
    return TaskSpec(spec.name, spec.kind, spec.column, tuple(sorted(seen)), spec.weight)


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
                if not _is_missing(v):
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
                except (TypeError, ValueError):
                    raise DataError(
                        f"regression label {v!r} of task {spec.name!r} is not a number",
                        reason="bad_label",
                        row=row_offset + i,
                        column=spec.label_column,
                    ) from None
            y = torch.tensor(ys, dtype=torch.float32)
            mask = mask & ~torch.isnan(y)
        out[spec.name] = Target(y=y, mask=mask)
    return out


class TaskHeads(nn.Module):
    """One head per task on a shared representation (the MultiModN decoders).

    Head: ``Linear`` when ``hidden`` is None, else Linear-ReLU-Dropout-Linear. Applied to the last
    dim, so (B, H) gives (B, C) and MultiModN's (S, B, H) states give (S, B, C).

    Args:
        in_dim: representation width H.
        tasks: task specs.
        hidden: hidden width, or None for a linear head.
        dropout: dropout in the hidden layer.
    """

    def __init__(
        self,
        in_dim: int,
        tasks: Sequence[TaskSpec],
        hidden: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.tasks = tuple(tasks)
        heads: dict[str, nn.Module] = {}
        for t in self.tasks:
            if hidden is None:
                heads[t.name] = nn.Linear(in_dim, t.num_outputs)
            else:
                heads[t.name] = nn.Sequential(
                    nn.Linear(in_dim, hidden),
                    nn.ReLU(),
                    nn.Dropout(dropout),
                    nn.Linear(hidden, t.num_outputs),
                )
        self.heads = nn.ModuleDict(heads)

    def forward(self, h: torch.Tensor) -> dict[str, torch.Tensor]:
        """(..., H) -> task name -> (..., C)."""
        return {name: head(h) for name, head in self.heads.items()}


def _entry_loss(spec: TaskSpec, logits: torch.Tensor, y: torch.Tensor, sigmoid_first: bool) -> torch.Tensor:
    """Per-row loss, (N, C) logits -> (N,)."""
    if spec.kind == "multiclass":
        # sigmoid_first reproduces MultiModN's CE on sigmoid outputs (reference_compat only).
        z = torch.sigmoid(logits) if sigmoid_first else logits
        return F.cross_entropy(z, y, reduction="none")
    if spec.kind == "multilabel":
        return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=-1)
    return (logits.squeeze(-1) - y).pow(2)


def task_loss(
    tasks: Sequence[TaskSpec],
    logits: Mapping[str, torch.Tensor],
    targets: Mapping[str, Target],
    row_mask: torch.Tensor | None = None,
    prefix: str = "",
) -> LossOutput:
    """Weighted sum over tasks of the mean loss over rows with a known label.

    ``L = Σ_j w_j · mean_{i: label known (and row_mask)} ℓ_j(logits_j[i], y_j[i])``; a task with no
    usable row contributes 0. Losses: cross-entropy (multiclass), mean BCE over classes
    (multilabel), squared error (regression).

    Args:
        tasks: task specs.
        logits: task name -> (B, C).
        targets: task name -> Target.
        row_mask: optional (B,) bool restricting the rows (e.g. modality present, for aux heads).
        prefix: metric name prefix.

    Returns:
        LossOutput with per-task metrics ``{prefix}{task}``.
    """
    total = next(iter(logits.values())).new_zeros(())
    metrics: dict[str, float] = {}
    for spec in tasks:
        tgt = targets[spec.name]
        m = tgt.mask.to(logits[spec.name].device)
        if row_mask is not None:
            m = m & row_mask
        if not bool(m.any()):
            continue
        idx = m.nonzero(as_tuple=True)[0]
        lj = _entry_loss(spec, logits[spec.name][idx], tgt.y.to(m.device)[idx], False).mean()
        total = total + spec.weight * lj
        metrics[f"{prefix}{spec.name}"] = float(lj.detach())
    return LossOutput(total, metrics)


def multistep_task_loss(
    tasks: Sequence[TaskSpec],
    step_logits: Mapping[str, torch.Tensor],
    step_mask: torch.Tensor,
    targets: Mapping[str, Target],
    reference_compat: bool = False,
) -> LossOutput:
    """MultiModN's loss over every step's predictions.

    Default: ``L = Σ_j w_j · mean_{(t, i) evaluated, label known} ℓ_j(P[t, j, i], y_j[i])``, the
    normaliser being the number of evaluated entries (skipped steps of a sample are not counted).
    ``reference_compat``: ``Σ_j w_j Σ_{t evaluated} mean_i ℓ_j / (D_tasks (E+1))``
    with cross-entropy applied to sigmoid outputs, as the original code does.

    Args:
        tasks: task specs.
        step_logits: task name -> (S, B, C) predictions of every state.
        step_mask: (S, B) bool, from :class:`~modalign.fusion.base.FusionOutput`.
        targets: task name -> Target.
        reference_compat: use the original normaliser and sigmoid-then-CE.

    Returns:
        LossOutput with ``step_{task}`` metrics.
    """
    s, b = step_mask.shape
    total = step_mask.new_zeros((), dtype=torch.float32)
    metrics: dict[str, float] = {}
    for spec in tasks:
        lg = step_logits[spec.name]  # (S, B, C)
        tgt = targets[spec.name]
        y = tgt.y.to(lg.device)
        known = tgt.mask.to(lg.device)
        if not bool(known.any()):
            continue
        y_rep = y.unsqueeze(0).expand(s, *y.shape)  # (S, B) or (S, B, C)
        per = _entry_loss(
            spec, lg.reshape(s * b, -1), y_rep.reshape(s * b, *y.shape[1:]), reference_compat
        ).reshape(s, b)  # (S, B)
        if reference_compat:
            kept = step_mask.any(dim=1)  # whole-batch steps
            kn = known.to(per.dtype)
            step_means = (per * kn).sum(dim=1) / kn.sum().clamp_min(1.0)  # (S,)
            lj = (step_means * kept.to(per.dtype)).sum() / (len(tasks) * s)
        else:
            m = (step_mask & known[None, :]).to(per.dtype)
            lj = (per * m).sum() / m.sum().clamp_min(1.0)
        total = total + spec.weight * lj
        metrics[f"step_{spec.name}"] = float(lj.detach())
    return LossOutput(total, metrics)


def probabilities(spec: TaskSpec, logits: torch.Tensor) -> torch.Tensor:
    """Logits -> probabilities (softmax / sigmoid) or the regression value, last dim C."""
    if spec.kind == "multiclass":
        return torch.softmax(logits, dim=-1)
    if spec.kind == "multilabel":
        return torch.sigmoid(logits)
    return logits
