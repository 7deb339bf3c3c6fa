"""Embedding geometry of paired modalities: modality gap, uniformity, alignment (EVALUATION.md §6).

Inputs are paired embeddings ``x``, ``y`` (N, D), row i of each from sample i, L2-normalised here.
Definitions (contrastive-gap paper, Fahim et al., arXiv 2405.18570; uniformity and alignment of
Wang & Isola, *Understanding Contrastive Representation Learning through Alignment and
Uniformity on the Hypersphere*, arXiv 2005.10242, with t = 2 and α = 2):

- ``gap`` = ``‖mean x̂ − mean ŷ‖₂`` in [0, 2]; ``centroid_cosine``: cosine of the two centroids;
- ``separability``: accuracy on a held-out 20% of the *pairs* of an L2-regularised logistic
  regression (C = 1, scikit-learn's defaults) telling x̂ (0) from ŷ (1); 0.5 = no gap;
- ``uniformity`` ``U(x̂) = log mean_{i<j} exp(−2‖x̂_i − x̂_j‖²)`` per modality, in [−8, 0];
- ``alignment`` = ``mean_i ‖x̂_i − ŷ_i‖²`` in [0, 4];
- ``cross_uniformity`` = ``log mean_{i≠j} exp(−2‖x̂_i − ŷ_j‖²)``.

Pairwise terms use ``‖a − b‖² = 2 − 2⟨a, b⟩`` and a log-sum-exp over row blocks, so N can be large.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_BLOCK_ELEMENTS = 2**22  # pairwise distances held at once (32 MB of float64)


def _unit(x: np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    return t / t.norm(dim=1, keepdim=True).clamp_min(1e-12)


def _log_mean_exp_pairs(a: torch.Tensor, b: torch.Tensor, exclude: str) -> float:
    """``log mean exp(−2‖a_i − b_j‖²)`` over pairs i<j (``upper``) or i≠j (``offdiag``)."""
    n = a.shape[0]
    block = max(1, _BLOCK_ELEMENTS // max(n, 1))
    terms, count = [], 0
    for start in range(0, n, block):
        sq = 2 - 2 * (a[start : start + block] @ b.T)  # (blk, N) squared distances
        rows = torch.arange(start, min(start + block, n))[:, None]
        cols = torch.arange(n)[None, :]
        keep = cols > rows if exclude == "upper" else cols != rows
        terms.append(torch.logsumexp((-2 * sq)[keep], 0))
        count += int(keep.sum())
    if count == 0:
        return float("nan")
    return float(torch.logsumexp(torch.stack(terms), 0)) - math.log(count)


def uniformity(x: np.ndarray) -> float:
    """``log mean_{i<j} exp(−2‖x̂_i − x̂_j‖²)`` (lower = more uniform)."""
    u = _unit(x)
    return _log_mean_exp_pairs(u, u, "upper")


def logistic_regression(
    x: torch.Tensor, y: torch.Tensor, c: float = 1.0, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binary L2 logistic regression as scikit-learn's default: minimise
    ``C Σ log(1 + exp(−s_i (x_i·w + b))) + ½‖w‖²`` (intercept not penalised) with L-BFGS."""
    w = torch.zeros(x.shape[1], dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    sign = 2 * y.to(x.dtype) - 1
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = c * torch.nn.functional.softplus(-sign * (x @ w + b)).sum() + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def separability(x: np.ndarray, y: np.ndarray, seed: int = 0, test_fraction: float = 0.2) -> float:
    """Held-out accuracy of telling the two modalities apart (pairs split 80/20, seeded)."""
    n = x.shape[0]
    n_test = int(round(n * test_fraction))
    if n_test < 1 or n - n_test < 1:
        return float("nan")
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    ux, uy = _unit(x), _unit(y)

    def stack(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.from_numpy(rows)
        feats = torch.cat([ux[idx], uy[idx]])
        labels = torch.cat([torch.zeros(len(rows)), torch.ones(len(rows))])
        return feats, labels

    w, b = logistic_regression(*stack(train))
    feats, labels = stack(test)
    pred = (feats @ w + b > 0).to(labels.dtype)
    return float((pred == labels).double().mean())


def geometry_metrics(x: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Gap, centroid cosine, separability, alignment, cross-modal uniformity of paired x, y."""
    ux, uy = _unit(x), _unit(y)
    if ux.shape[0] < 2:
        return {}
    cx, cy = ux.mean(0), uy.mean(0)
    cos = float(cx @ cy / (cx.norm() * cy.norm()).clamp_min(1e-12))
    return {
        "gap": float((cx - cy).norm()),
        "centroid_cosine": cos,
        "separability": separability(x, y, seed),
        "alignment": float(((ux - uy) ** 2).sum(1).mean()),
        "cross_uniformity": _log_mean_exp_pairs(ux, uy, "offdiag"),
    }
