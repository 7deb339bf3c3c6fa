"""The figures of ``report.html`` (matplotlib, Agg), each returned as a PNG data URI.

Every function takes plain arrays and returns ``""`` when there is nothing to draw.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

_MAX_POINTS = 2000  # points per projection / histogram sample: enough to see, small to embed


def _figure(width: float = 6.0, height: float = 3.6, ncols: int = 1) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width, height))


def _uri(fig: Any) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def recall_curves(ranks: dict[str, np.ndarray], max_k: int = 50) -> str:
    """R@k against k (1..max_k, log axis) per direction, from best-positive 0-based ranks."""
    if not ranks:
        return ""
    fig, ax = _figure()
    ks = np.arange(1, max_k + 1)
    for name, r in ranks.items():
        if r.size:
            ax.plot(ks, [(r < k).mean() for k in ks], label=name)
    ax.set_xscale("log")
    ax.set_xlabel("k")
    ax.set_ylabel("R@k (hit rate)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _uri(fig)


def loss_curves(log: list[dict[str, Any]]) -> str:
    """Training loss (and validation loss) against step from ``metrics.jsonl`` lines."""
    train = [(r["step"], r["loss"]) for r in log if isinstance(r.get("loss"), (int, float))]
    val = [(r["step"], r["val/loss"]) for r in log if isinstance(r.get("val/loss"), (int, float))]
    if not train and not val:
        return ""
    fig, ax = _figure()
    for points, label, style in ((train, "training loss", "-"), (val, "validation loss", "o-")):
        finite = [(s, v) for s, v in points if math.isfinite(v)]
        if finite:
            ax.plot(*zip(*finite), style, label=label, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _uri(fig)


def pca_projection(
    emb: dict[str, np.ndarray], present: dict[str, np.ndarray], labels: Sequence[Any] | None
) -> str:
    """2-D PCA of every modality's embeddings together, coloured by modality and by class."""
    rows, modality, cls = [], [], []
    rng = np.random.default_rng(0)
    for m, e in emb.items():
        idx = np.flatnonzero(present[m])
        idx = idx if idx.size <= _MAX_POINTS else np.sort(rng.choice(idx, _MAX_POINTS, replace=False))
        rows.append(e[idx])
        modality += [m] * idx.size
        cls += [labels[int(i)] for i in idx] if labels is not None else [None] * idx.size
    x = np.concatenate(rows) if rows else np.zeros((0, 2))
    if x.shape[0] < 3:
        return ""
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xy = x @ vt[:2].T  # (N, 2)
    panels = [(modality, "by modality")] + ([(cls, "by class")] if labels is not None else [])
    fig, axes = _figure(5.0 * len(panels), 4.0, ncols=len(panels))
    for ax, (values, title) in zip(np.atleast_1d(axes), panels):
        names = sorted({str(v) for v in values})
        for n in names[:20]:  # at most 20 legend entries
            sel = np.array([str(v) == n for v in values])
            ax.scatter(xy[sel, 0], xy[sel, 1], s=6, alpha=0.6, label=n)
        ax.set_title(f"PCA {title}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.legend(fontsize=6, markerscale=2)
    return _uri(fig)


def similarity_histogram(
    q: np.ndarray, t: np.ndarray, qkeys: Sequence[Hashable], tkeys: Sequence[Hashable]
) -> str:
    """Cosine similarities of positive pairs against negative pairs (a sample of each)."""
    if len(q) == 0 or len(t) == 0:
        return ""
    rng = np.random.default_rng(0)
    qi = rng.choice(len(q), min(len(q), 300), replace=False)
    qn = q[qi] / np.linalg.norm(q[qi], axis=1, keepdims=True).clip(1e-12)
    tn = t / np.linalg.norm(t, axis=1, keepdims=True).clip(1e-12)
    s = qn @ tn.T  # (q, C)
    codes: dict[Hashable, int] = {}
    qc = np.array([codes.setdefault(qkeys[i], len(codes)) for i in qi])
    tc = np.array([codes.setdefault(k, len(codes)) for k in tkeys])
    pos = qc[:, None] == tc[None, :]
    fig, ax = _figure(5.0, 3.2)
    bins = np.linspace(-1, 1, 61)
    neg = s[~pos]
    neg = neg if neg.size <= 50_000 else rng.choice(neg, 50_000, replace=False)
    ax.hist(neg, bins=bins, alpha=0.6, density=True, label=f"negative pairs ({(~pos).sum():,})")
    ax.hist(s[pos], bins=bins, alpha=0.6, density=True, label=f"positive pairs ({pos.sum():,})")
    ax.set_xlabel("cosine similarity")
    ax.legend(fontsize=7)
    return _uri(fig)


def confusion(classes: Sequence[Hashable], matrix: np.ndarray) -> str:
    """Row-normalised confusion matrix (true class rows, predicted class columns)."""
    if matrix.size == 0 or matrix.sum() == 0:
        return ""
    n = len(classes)
    fig, ax = _figure(max(3.5, 0.35 * n + 2), max(3.0, 0.35 * n + 1.5))
    rates = matrix / matrix.sum(1, keepdims=True).clip(1)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    names = [str(c)[:12] for c in classes]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if rates[i, j] > 0.5 else "black"
                    ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=6, color=color)
    return _uri(fig)


def mcar_curve(groups: dict[str, dict[str, Any]]) -> tuple[str, list[str], list[str]]:
    """Metrics against the fraction of modalities dropped at random; also the rates and metrics."""
    rates = sorted(groups, key=float)
    metrics = sorted({c for g in groups.values() for c in g if not c.endswith("missing_fraction")})
    fig, ax = _figure()
    for m in metrics:
        ys = [groups[r].get(m) for r in rates]
        ax.plot([float(r) for r in rates], [math.nan if y is None else y for y in ys], marker="o", label=m)
    ax.set_xlabel("fraction of modalities dropped at random")
    ax.set_ylabel("metric")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _uri(fig), rates, metrics
