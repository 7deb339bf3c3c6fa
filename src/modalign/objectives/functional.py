"""Pure loss functions on tensors (the functional core of every objective).

Conventions (see ``shared/reference/METHODS.md`` §0): rows of ``a`` and ``b`` are unit vectors and row i
of every modality is sample i; ``logit_scale`` is the *scale* ``s = 1/τ`` (already exponentiated).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pair_mask(present_a: torch.Tensor | None, present_b: torch.Tensor | None) -> torch.Tensor | None:
    """Rows where both modalities are present, or None when nothing is masked."""
    if present_a is None and present_b is None:
        return None
    if present_a is None:
        return present_b
    if present_b is None:
        return present_a
    return present_a & present_b


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    present: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP loss): mean of the a->b and b->a cross-entropies.

    ``Z = s · a bᵀ`` (B, B); ``L = ½[CE(Z, arange) + CE(Zᵀ, arange)]`` (Radford et al., *Learning
    Transferable Visual Models From Natural Language Supervision*, arXiv 2103.00020, Fig. 3).
    One logit matrix serves both directions.

    Args:
        a: (B, D) unit rows. b: (B, D) unit rows, row i pairs with ``a[i]``.
        logit_scale: ``s = 1/τ`` (a scalar tensor keeps its gradient).
        present: optional (B,) bool; absent rows are removed from anchors *and* candidates, so the
            result equals the loss on the batch with those rows deleted.
        positives: optional (B, B) bool; several positives per row give soft targets spread
            uniformly over the positives of the row (the diagonal must be among them).
        label_smoothing: as in ``F.cross_entropy``.

    Returns:
        Scalar loss; 0 (with a graph) when fewer than two rows are present.
    """
    if present is not None:
        a, b = a[present], b[present]
        if positives is not None:
            positives = positives[present][:, present]
    n = a.shape[0]
    if n < 2:
        return (a.sum() + b.sum()) * 0.0
    logits = logit_scale * (a @ b.T)  # (B, B)
    if positives is None:
        target: torch.Tensor = torch.arange(n, device=a.device)
        return 0.5 * (
            F.cross_entropy(logits, target, label_smoothing=label_smoothing)
            + F.cross_entropy(logits.T, target, label_smoothing=label_smoothing)
        )
    pos = positives.to(logits.dtype)
    rows = pos / pos.sum(1, keepdim=True)
    cols = pos.T / pos.T.sum(1, keepdim=True)
    return 0.5 * (
        F.cross_entropy(logits, rows, label_smoothing=label_smoothing)
        + F.cross_entropy(logits.T, cols, label_smoothing=label_smoothing)
    )
