"""Zero-shot classification against text prototypes (CLIP_benchmark convention, EVALUATION.md §2).

Prototype of class c: every prompt embedding L2-normalised, averaged, re-normalised (prompt
ensembling: several templates per class, e.g. ``"a photo of a {}."``). Logits ``x̂ · W_c`` (the CLIP
factor 100 changes no ranking). The rank of the true class follows the retrieval rule: classes
scoring higher, plus equal-scoring classes of lower index, are ahead (as ``argmax`` and
``torch.topk`` pick the first maximum); a sample whose true class scores NaN (a NaN row) is never a
hit. Metrics: ``accuracy`` (top-1), ``top5_accuracy`` (NaN with fewer than 5 classes) and
``mean_per_class_recall`` (scikit-learn's balanced accuracy: mean recall over classes present in y).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

DEFAULT_TEMPLATES = ("{}",)


def class_prototypes(
    prompt_emb: np.ndarray, prompt_labels: Sequence[Hashable]
) -> tuple[list[Hashable], np.ndarray]:
    """Classes (sorted) and their prototype matrix (C, D) from prompt embeddings (P, D)."""
    classes = sorted(set(prompt_labels), key=lambda c: (str(type(c)), c))  # type: ignore[type-var]
    labels = np.asarray([classes.index(c) for c in prompt_labels])
    unit = prompt_emb / np.linalg.norm(prompt_emb, axis=1, keepdims=True).clip(1e-12)
    protos = np.stack([unit[labels == i].mean(0) for i in range(len(classes))])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True).clip(1e-12)
    return classes, protos


def fill_templates(
    class_names: dict[Hashable, list[str]], templates: Sequence[str]
) -> dict[Hashable, list[str]]:
    """Every template filled with every name of each class (``{}`` marks the name)."""
    return {c: [t.replace("{}", n) for n in names for t in templates] for c, names in class_names.items()}


def true_class_ranks(
    emb: np.ndarray, labels: Sequence[Hashable], classes: Sequence[Hashable], prototypes: np.ndarray
) -> np.ndarray:
    """(N,) 0-based rank of each sample's true class; -1 for a label that is not a class, C when
    the true class scores NaN (never a hit)."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index.get(c, -1) for c in labels], dtype=np.int64)
    with np.errstate(invalid="ignore"):
        scores = emb @ prototypes.T  # (N, C)
    n_classes = scores.shape[1]
    true = np.take_along_axis(scores, y.clip(0)[:, None], axis=1)  # (N, 1)
    lower = np.arange(n_classes)[None, :] < y[:, None]
    # NaN compares False: a NaN class is never ahead of the true class
    ahead = (scores > true) | ((scores == true) & lower)
    rank = ahead.sum(1)
    rank[np.isnan(true[:, 0])] = n_classes
    rank[y < 0] = -1
    return rank


def zero_shot_per_sample(
    emb: np.ndarray, labels: Sequence[Hashable], classes: Sequence[Hashable], prototypes: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-sample values: top-1/top-5 hits (a label that is no class is a miss), and for
    ``mean_per_class_recall`` (n, 2) rows of (hit, class index) of the samples whose label is a
    class -- that statistic needs the class."""
    rank = true_class_ranks(emb, labels, classes, prototypes)
    known = rank >= 0
    hit1 = (known & (rank < 1)).astype(np.float64)
    out = {"accuracy": hit1}
    if len(classes) >= 5:
        out["top5_accuracy"] = (known & (rank < 5)).astype(np.float64)
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index.get(c, -1) for c in labels], dtype=np.float64)
    out["mean_per_class_recall"] = np.stack([hit1[known], y[known]], axis=1)
    return out


def balanced_recall(rows: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean over present classes of recall from (n, 2) (hit, class) rows, optionally weighted."""
    if rows.shape[0] == 0:
        return float("nan")
    w = np.ones(rows.shape[0]) if weights is None else weights
    cls = rows[:, 1].astype(np.int64)
    num = np.bincount(cls, weights=w * rows[:, 0])
    den = np.bincount(cls, weights=w)
    present = den > 0
    return float((num[present] / den[present]).mean())


def zero_shot_metrics(
    emb: np.ndarray, labels: Sequence[Hashable], classes: Sequence[Hashable], prototypes: np.ndarray
) -> dict[str, float]:
    """Top-1 (and top-5) accuracy and mean per-class recall of ``emb`` (N, D) by ``prototypes``."""
    per = zero_shot_per_sample(emb, labels, classes, prototypes)
    out = {"accuracy": float(per["accuracy"].mean()) if per["accuracy"].size else float("nan")}
    if "top5_accuracy" in per:
        out["top5_accuracy"] = float(per["top5_accuracy"].mean()) if per["accuracy"].size else float("nan")
    out["mean_per_class_recall"] = balanced_recall(per["mean_per_class_recall"])
    return out


def confusion_matrix(
    emb: np.ndarray, labels: Sequence[Hashable], classes: Sequence[Hashable], prototypes: np.ndarray
) -> np.ndarray:
    """(C, C) counts: row = true class, column = predicted (first maximum); NaN rows and labels
    that are no class are left out."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index.get(c, -1) for c in labels], dtype=np.int64)
    with np.errstate(invalid="ignore"):
        scores = emb @ prototypes.T
    ok = (y >= 0) & np.isfinite(scores).all(1)
    pred = scores[ok].argmax(1) if ok.any() else np.zeros(0, np.int64)
    out = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(out, (y[ok], pred), 1)
    return out
