"""Pairwise contrastive losses on two embedding matrices: InfoNCE, SigLIP, DCL(W), CWCL.

Public through :mod:`modalign.objectives.functional`. Every function takes unit rows ``a, b``
``(B, D)`` (row i of ``a`` pairs with row i of ``b``) and a ``present`` mask ``(B,)``: absent
rows are deleted before anything is computed, so they are neither anchors nor candidates and the
result equals the loss on the batch with those rows removed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modalign.errors import ConfigError
from modalign.objectives.tiled import ChunkSize, resolve_chunk, tiled_info_nce, tiled_siglip


def pair_mask(present_a: torch.Tensor | None, present_b: torch.Tensor | None) -> torch.Tensor | None:
    """Rows where both modalities are present, or None when nothing is masked.

    Args:
        present_a: (B,) bool or None (None = all present).
        present_b: (B,) bool or None.

    Returns:
        (B,) bool, or None when both are None.
    """
    if present_a is None and present_b is None:
        return None
    if present_a is None:
        return present_b
    if present_b is None:
        return present_a
    return present_a & present_b


def zero_loss(*tensors: torch.Tensor) -> torch.Tensor:
    """A scalar 0 connected to the graph of ``tensors`` (so ``backward`` still works)."""
    total = tensors[0].sum() * 0.0
    for t in tensors[1:]:
        total = total + t.sum() * 0.0
    return total


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Soft-target cross-entropy ``SCE(Z, T) = (1/B) Σ_i −Σ_j T_ij log softmax(Z_i)_j``.

    Rows of ``targets`` need not sum to one; several references rely on that.

    Args:
        logits: (B, K).
        targets: (B, K), same dtype family as ``logits``.

    Returns:
        Scalar mean over rows.
    """
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def _select(present: torch.Tensor | None, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    if present is None:
        return tensors
    return tuple(t[present] for t in tensors)


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    present: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    chunk_size: ChunkSize = None,
) -> torch.Tensor:
    """Symmetric InfoNCE (CLIP loss): mean of the a->b and b->a cross-entropies.

    ``Z = s · a bᵀ`` (B, B); ``L = ½[CE(Z, arange) + CE(Zᵀ, arange)]`` (Radford et al., *Learning
    Transferable Visual Models From Natural Language Supervision*, arXiv 2103.00020, Fig. 3).
    One logit matrix serves both directions (open_clip builds two; same values, fewer FLOPs).

    Args:
        a: (B, D) unit rows.
        b: (B, D) unit rows, row i pairs with ``a[i]``.
        logit_scale: ``s = 1/τ``, already exponentiated (a scalar tensor keeps its gradient).
        present: optional (B,) bool; absent rows are removed from anchors *and* candidates, so the
            result equals the loss on the batch with those rows deleted.
        positives: optional (B, B) bool; several positives per row give soft targets spread
            uniformly over the positives of the row (the diagonal must be among them).
        label_smoothing: as in ``F.cross_entropy``.
        chunk_size: an int computes the exact loss tile by tile with tiles of
            ``chunk_size x chunk_size`` recomputed in backward (:func:`tiled.tiled_info_nce`,
            which keeps up to ``tiled.CACHE_MB`` MiB of forward tiles): peak memory grows with
            ``B·D + chunk_size²`` instead of ``B²``; not combinable with ``positives`` or
            ``label_smoothing``. ``"auto"`` tiles when the present rows are many enough for it
            to be faster (:func:`tiled.resolve_chunk`) and there are neither ``positives`` nor
            ``label_smoothing``; otherwise it computes the full matrix. ``None``: never tile.
            The tiled path is once differentiable (no double backward).

    Returns:
        Scalar loss; 0 (with a graph) when fewer than two rows are present.

    Raises:
        ConfigError: ``chunk_size`` not ``None``, ``"auto"`` or an int >= 1, or an int combined
            with ``positives``/``label_smoothing``.
    """
    if present is not None and positives is not None:
        positives = positives[present][:, present]
    a, b = _select(present, a, b)
    n = a.shape[0]
    if n < 2:
        return zero_loss(a, b) + zero_loss(torch.as_tensor(logit_scale))
    tileable = positives is None and label_smoothing == 0.0
    if chunk_size == "auto" and not tileable:
        chunk_size = None  # the full matrix is the only path with these options
    chunk = resolve_chunk(chunk_size, n)
    if chunk is not None:
        if not tileable:
            raise ConfigError(
                "info_nce: chunk_size (tiled loss) supports neither positives nor label_smoothing; "
                "drop chunk_size (or set it to 'auto') or drop those options"
            )
        return tiled_info_nce(a, b, logit_scale, chunk_size=chunk)
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


def siglip(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float,
    *,
    present: torch.Tensor | None = None,
    chunk_size: ChunkSize = None,
) -> torch.Tensor:
    """Sigmoid pairwise loss (SigLIP), open_clip ``SigLipLoss`` reduction.

    ``Z = s · a bᵀ + t``, labels ``Y = 2I − J``; ``L = (1/B) Σ_{i,j} softplus(−Y_ij Z_ij)``: a sum
    over all ``B²`` pairs divided by ``B``, not a mean over pairs (Zhai et al., *Sigmoid Loss for
    Language Image Pre-Training*, arXiv 2303.15343, Algorithm 1).

    Args:
        a: (B, D) unit rows.
        b: (B, D) unit rows.
        logit_scale: ``s`` (already exponentiated).
        logit_bias: ``t``, added to every logit.
        present: optional (B,) bool; absent rows deleted from both sides.
        chunk_size: an int gives the exact loss computed in ``(chunk_size, chunk_size)`` tiles
            (:func:`tiled.tiled_siglip`); ``"auto"`` tiles when the present rows are many enough
            (:func:`tiled.resolve_chunk`); ``None`` never tiles.

    Returns:
        Scalar loss; 0 (with a graph) when no row is present.

    Raises:
        ConfigError: ``chunk_size`` not ``None``, ``"auto"`` or an int >= 1.
    """
    a, b = _select(present, a, b)
    n = a.shape[0]
    if n < 1:
        return zero_loss(a, b, torch.as_tensor(logit_scale), torch.as_tensor(logit_bias))
    chunk = resolve_chunk(chunk_size, n)
    if chunk is not None:
        return tiled_siglip(a, b, logit_scale, logit_bias, chunk_size=chunk)
    logits = logit_scale * (a @ b.T) + logit_bias  # (B, B)
    # softplus(-Y Z) summed = Σ softplus(Z) − Σ_i Z_ii: Y flips the sign on the diagonal only.
    labels = 2 * torch.eye(n, dtype=logits.dtype, device=logits.device) - 1
    return F.softplus(-labels * logits).sum() / n


def dcl(
    a: torch.Tensor,
    b: torch.Tensor,
    temperature: float | torch.Tensor,
    *,
    weighted: bool = False,
    sigma: float = 0.5,
    intra_modal_negatives: bool = False,
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Decoupled contrastive loss: InfoNCE with the positive removed from the denominator.

    ``Z = a bᵀ/τ``; ``L = ½ mean_i[−w_i Z_ii + LSE_{j≠i} Z_ij] + ½ mean_j[−w_j Z_jj + LSE_{i≠j}
    Z_ij]`` (Yeh et al., *Decoupled Contrastive Learning*, arXiv 2110.06848, Eq. 6). With
    ``intra_modal_negatives`` the same-modality similarities ``{⟨a_i, a_j⟩/τ}_{j≠i}`` join the one
    LSE (the paper's SimCLR form with ``a`` as view 1, = lightly 1.6 ``DCLLoss``). Weighted (DCLW):
    ``w = 2 − B·softmax(⟨a_i, b_i⟩/σ)`` over the batch, detached; else ``w = 1``. Values can be
    negative.

    Args:
        a: (B, D) unit rows.
        b: (B, D) unit rows.
        temperature: ``τ`` (the similarities are divided by it).
        weighted: DCLW weighting of the positive term.
        sigma: ``σ`` of the DCLW weights.
        intra_modal_negatives: add same-modality negatives (SimCLR form).
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar loss; 0 (with a graph) when fewer than two rows are present.
    """
    a, b = _select(present, a, b)
    n = a.shape[0]
    if n < 2:
        return zero_loss(a, b)
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    cross = (a @ b.T) / temperature  # (B, B)
    pos = cross.diagonal()
    if weighted:
        w = 2 - n * torch.softmax((a * b).sum(1).detach() / sigma, dim=0)
        pos = pos * w
    neg_ab = cross.masked_fill(eye, float("-inf"))
    neg_ba = cross.T.masked_fill(eye, float("-inf"))
    if intra_modal_negatives:
        neg_ab = torch.cat([neg_ab, ((a @ a.T) / temperature).masked_fill(eye, float("-inf"))], 1)
        neg_ba = torch.cat([neg_ba, ((b @ b.T) / temperature).masked_fill(eye, float("-inf"))], 1)
    loss_ab = (torch.logsumexp(neg_ab, 1) - pos).mean()
    loss_ba = (torch.logsumexp(neg_ba, 1) - pos).mean()
    return 0.5 * (loss_ab + loss_ba)


def cwcl_weights(frozen: torch.Tensor) -> torch.Tensor:
    """CWCL target weights ``w_ij = ½ + ½⟨u_i, u_j⟩`` from a frozen tower, detached, ``w_ii = 1``.

    Args:
        frozen: (B, D) unit rows of the frozen modality.

    Returns:
        (B, B) weights in ``[0, 1]``.
    """
    u = frozen.detach()
    w = 0.5 + 0.5 * (u @ u.T)
    return w.fill_diagonal_(1.0)


def cwcl(
    a: torch.Tensor,
    b: torch.Tensor,
    frozen_a: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    reverse: str = "cwcl",
    present: torch.Tensor | None = None,
) -> torch.Tensor:
    """Continuously weighted contrastive loss (CWCL).

    ``W = cwcl_weights(frozen_a)`` (detached), ``Z = s · a bᵀ``; ``L_{a→b} = SCE(Z, W/rowsum W)``;
    ``L = L_{a→b} + L_{b→a}`` (a **sum**), where ``L_{b→a} = SCE(Zᵀ, W/rowsum W)`` when
    ``reverse="cwcl"`` (W is symmetric) or plain ``CE(Zᵀ, arange)`` when ``reverse="infonce"``.
    Srinivasa et al., *CWCL: Cross-Modal Transfer with Continuously Weighted Contrastive Loss*,
    arXiv 2309.14580. With ``W = I`` each direction equals the InfoNCE direction.

    Args:
        a: (B, D) unit rows of the frozen-tower modality (anchors of the weighted direction).
        b: (B, D) unit rows of the trained modality.
        frozen_a: (B, D) unit rows the weights come from (usually ``a`` itself).
        logit_scale: ``s = 1/τ``.
        reverse: ``"cwcl"`` or ``"infonce"`` for the ``b → a`` direction.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar loss; 0 (with a graph) when fewer than two rows are present.

    Raises:
        ConfigError: unknown ``reverse``.
    """
    if reverse not in ("cwcl", "infonce"):
        raise ConfigError(f"cwcl: reverse={reverse!r}; use 'cwcl' or 'infonce'")
    a, b, frozen_a = _select(present, a, b, frozen_a)
    n = a.shape[0]
    if n < 2:
        return zero_loss(a, b) + zero_loss(torch.as_tensor(logit_scale))
    w = cwcl_weights(frozen_a).to(a.dtype)
    targets = w / w.sum(1, keepdim=True)
    logits = logit_scale * (a @ b.T)  # (B, B)
    forward_loss = soft_cross_entropy(logits, targets)
    if reverse == "cwcl":
        backward_loss = soft_cross_entropy(logits.T, targets)
    else:
        backward_loss = F.cross_entropy(logits.T, torch.arange(n, device=a.device))
    return forward_loss + backward_loss
