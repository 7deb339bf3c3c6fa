"""Task heads and masked task losses (one head per task on a shared representation).

Tasks and their label encoding are in :mod:`modalign.tasks`; missing labels are masked out of every
loss, never imputed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from modalign.errors import ConfigError
from modalign.tasks import Target, TaskSpec
from modalign.types import LossOutput


class TaskHeads(nn.Module):
    """One head per task on a shared representation (the MultiModN decoders).

    Head: ``Linear`` when ``hidden`` is None; else Linear(H, h)-ReLU-Dropout, then ``depth - 1``
    times Linear(h, h)-ReLU, then Linear(h, C) (depth 2 is M3CoL's
    Linear-ReLU-Dropout-Linear-ReLU-Linear). Applied to the last dim, so (B, H) gives (B, C) and
    MultiModN's (S, B, H) states give (S, B, C).

    Args:
        in_dim: representation width H.
        tasks: task specs.
        hidden: hidden width h, or None for a linear head.
        dropout: dropout after the first hidden layer.
        depth: number of hidden layers (needs ``hidden`` when above 1).
    """

    def __init__(
        self,
        in_dim: int,
        tasks: Sequence[TaskSpec],
        hidden: int | None = None,
        dropout: float = 0.0,
        depth: int = 1,
    ):
        super().__init__()
        if depth < 1 or (depth > 1 and hidden is None):
            raise ConfigError(f"task heads: depth {depth} needs depth >= 1 and a hidden width above 1")
        self.tasks = tuple(tasks)
        heads: dict[str, nn.Module] = {}
        for t in self.tasks:
            if hidden is None:
                heads[t.name] = nn.Linear(in_dim, t.num_outputs)
                continue
            layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
            for _ in range(depth - 1):
                layers += [nn.Linear(hidden, hidden), nn.ReLU()]
            heads[t.name] = nn.Sequential(*layers, nn.Linear(hidden, t.num_outputs))
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
