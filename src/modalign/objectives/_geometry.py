"""Uniformity, alignment and cross-modal uniformity (Wang & Isola; contrastive-gap paper).

Public through :mod:`modalign.objectives.functional`.
"""

from __future__ import annotations

import math

import torch

from modalign.objectives._pairwise import _select, zero_loss


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # ‖x_i − y_j‖² from the Gram matrix (cdist's backward is slower and NaNs at zero distance).
    return ((x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2 * (x @ y.T)).clamp_min(0)


def uniformity(x: torch.Tensor, t: float = 2.0, *, present: torch.Tensor | None = None) -> torch.Tensor:
    """Uniformity ``log mean_{i<j} exp(−t‖x_i − x_j‖²)`` (lower = more uniform on the sphere).

    Wang & Isola, *Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere*, arXiv 2005.10242, Eq. 5.

    Args:
        x: (B, D) unit rows.
        t: kernel parameter.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar; 0 (with a graph) for fewer than two rows.
    """
    (x,) = _select(present, x)
    n = x.shape[0]
    if n < 2:
        return zero_loss(x)
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    d = _sq_dists(x, x)[iu[0], iu[1]]  # (B(B−1)/2,)
    return torch.logsumexp(-t * d, 0) - math.log(d.numel())


def alignment(
    a: torch.Tensor, b: torch.Tensor, alpha: float = 2.0, *, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Alignment ``mean_i ‖a_i − b_i‖^α`` (Wang & Isola, arXiv 2005.10242, Eq. 4).

    Args:
        a: (B, D) unit rows.
        b: (B, D) unit rows paired with ``a``.
        alpha: exponent.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar; 0 (with a graph) when no row is present.
    """
    a, b = _select(present, a, b)
    if a.shape[0] < 1:
        return zero_loss(a, b)
    sq = ((a - b) ** 2).sum(1)
    if alpha == 2.0:
        return sq.mean()  # avoids the sqrt's infinite gradient at a_i = b_i
    return sq.clamp_min(1e-30).pow(alpha / 2).mean()


def cross_uniformity(
    a: torch.Tensor, b: torch.Tensor, t: float = 2.0, *, present: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-modal uniformity ``log mean_{i≠j} exp(−t‖a_i − b_j‖²)`` (ordered off-diagonal pairs).

    Fahim et al., *It's Not a Modality Gap: Characterizing and Addressing the Contrastive Gap*,
    arXiv 2405.18570, Sec. 5.

    Args:
        a: (B, D) unit rows.
        b: (B, D) unit rows.
        t: kernel parameter.
        present: optional (B,) bool; absent rows deleted.

    Returns:
        Scalar; 0 (with a graph) for fewer than two rows.
    """
    a, b = _select(present, a, b)
    n = a.shape[0]
    if n < 2:
        return zero_loss(a, b)
    off = ~torch.eye(n, dtype=torch.bool, device=a.device)
    d = _sq_dists(a, b)[off]  # (B(B−1),)
    return torch.logsumexp(-t * d, 0) - math.log(d.numel())
