"""The training loss of a fusion model: task loss (per step for MultiModN) + regulariser + aux heads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from modalign.fusion.base import FusionOutput
from modalign.fusion.heads import multistep_task_loss, task_loss
from modalign.tasks import Target, TaskSpec
from modalign.types import LossOutput


def fusion_loss(
    tasks: Sequence[TaskSpec],
    fused: FusionOutput,
    logits: Mapping[str, torch.Tensor],
    step_logits: Mapping[str, torch.Tensor] | None,
    targets: Mapping[str, Target],
    *,
    aux_logits: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    present: Mapping[str, torch.Tensor] | None = None,
    aux_weight: float = 1.0,
    reference_compat: bool = False,
) -> LossOutput:
    """Task loss of the fused prediction plus MultiModN's terms and unimodal auxiliary heads.

    * With per-step logits (MultiModN), every evaluated state's prediction is supervised
      (:func:`multistep_task_loss`); otherwise the fused prediction (:func:`task_loss`).
    * ``fused.regularizer`` (MultiModN's state-change term, already weighted) is added.
    * Each unimodal head ``aux_logits[m]`` adds ``aux_weight`` times its task loss over the rows
      where modality m is present (M3CoL's recipe).
    """
    if step_logits is not None and fused.step_mask is not None:
        main = multistep_task_loss(tasks, step_logits, fused.step_mask, targets, reference_compat)
    else:
        main = task_loss(tasks, logits, targets)
    total, metrics = main.loss, dict(main.metrics)
    if fused.regularizer is not None:
        total = total + fused.regularizer
        metrics["regularizer"] = float(fused.regularizer.detach())
    for m, lg in (aux_logits or {}).items():
        row_mask = present[m] if present is not None else None
        aux = task_loss(tasks, lg, targets, row_mask=row_mask, prefix=f"aux_{m}_")
        total = total + aux_weight * aux.loss
        metrics.update(aux.metrics)
    return LossOutput(total, metrics)
