"""CLIP-blind pairs (Tong et al., *Eyes Wide Shut? Exploring the Visual Shortcomings of Multimodal
LLMs*, CVPR 2024, arXiv 2401.06209) and MMVP-VLM pair scoring (EVALUATION.md §7).

Mining: items that space A finds near-identical (``cos_A > hi``, 0.95 in the paper with CLIP) while
a second space B finds them different (``cos_B < lo``, 0.6 with DINOv2). Blockwise over rows, so
the (N, N) similarity matrices are never held; pairs ``i < j`` in row-major order, or ranked by
``cos_A − cos_B`` (largest disagreement first) when ``top_k`` is given.

Scoring: for a pair of items (1, 2) with statements (t1, t2), ``p(item | t)`` is a softmax over the
two items of ``100 · cos(item, t)``; t1 is right when ``p(item1 | t1) > 0.5`` (strictly: a tie is
wrong), t2 when ``p(item2 | t2) > 0.5``; a pair scores only when both are right. Score = correct
pairs / pairs × 100; random guessing scores 25.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def mine_blind_pairs(
    emb_a: np.ndarray,
    emb_b: np.ndarray,
    hi: float = 0.95,
    lo: float = 0.6,
    top_k: int | None = None,
    block: int = 1024,
    groups: Sequence[Hashable] | None = None,
) -> list[tuple[int, int]]:
    """Pairs (i, j), i < j, with ``cos_A(i, j) > hi`` and ``cos_B(i, j) < lo``.

    Args:
        emb_a, emb_b: (N, D_a), (N, D_b) embeddings of the same N items in two spaces.
        top_k: keep the ``top_k`` pairs of largest ``cos_A − cos_B`` (ties: row-major order);
            only that many are held between blocks.
        block: rows per block.
        groups: (N,) items of the same group never pair (e.g. items with the same statement, which
            MMVP scoring could never tell apart).

    Raises:
        ValueError: the two spaces (or ``groups``) cover different numbers of items.
    """
    a, b = _unit(emb_a), _unit(emb_b)
    n = a.shape[0]
    if b.shape[0] != n or (groups is not None and len(groups) != n):
        raise ValueError(
            f"emb_a has {n} items, emb_b {b.shape[0]}"
            + ("" if groups is None else f", groups {len(groups)}")
            + ": the same items are needed"
        )
    codes: dict[Hashable, int] = {}
    group = np.array([codes.setdefault(g, len(codes)) for g in groups] if groups is not None else range(n))
    found: list[tuple[int, int, float]] = []
    for start in range(0, n, block):
        ca = a[start : start + block] @ a.T  # (blk, N)
        cb = b[start : start + block] @ b.T
        rows = np.arange(start, min(start + block, n))[:, None]
        hit = (ca > hi) & (cb < lo) & (np.arange(n)[None, :] > rows) & (group[None, :] != group[rows])
        for r, j in zip(*np.nonzero(hit)):
            found.append((int(start + r), int(j), float(ca[r, j] - cb[r, j])))
        if top_k is not None:
            found = sorted(found, key=lambda p: -p[2])[:top_k]  # stable: row-major among equal gaps
    return [(i, j) for i, j, _ in found]


def mmvp_pair_scores(items: np.ndarray, statements: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """(P,) 1.0 where both statements of a pair pick their own item, else 0.0.

    Args:
        items: (N, D) item embeddings (e.g. images). statements: (N, D) the statement about each item
            (e.g. ``"a photo of " + statement`` embedded by the text tower), row i about item i.
    """
    x, t = _unit(items), _unit(statements)
    out = np.zeros(len(pairs))
    for p, (i, j) in enumerate(pairs):
        # p(i | t_i) > 0.5  <=>  100 cos(i, t_i) > 100 cos(j, t_i): softmax over two items
        right_i = 100 * (x[i] @ t[i]) > 100 * (x[j] @ t[i])
        right_j = 100 * (x[j] @ t[j]) > 100 * (x[i] @ t[j])
        out[p] = float(right_i and right_j)
    return out


def mmvp_score(items: np.ndarray, statements: np.ndarray, pairs: list[tuple[int, int]]) -> dict[str, float]:
    """``score`` (correct pairs / pairs × 100), ``n_pairs`` and the random baseline ``chance`` (25)."""
    s = mmvp_pair_scores(items, statements, pairs)
    return {
        "score": float(s.mean() * 100) if s.size else float("nan"),
        "n_pairs": float(s.size),
        "chance": 25.0,
    }
