"""Prediction metrics: accuracy, macro-F1, AUROC (binary, one-vs-rest), MAE and RMSE.

Pure numpy, no scikit-learn at run time; tests check each against scikit-learn and a brute-force
definition. Rows with a missing label (``mask`` False) are excluded before any metric.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from modalign.errors import DataError


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Fraction of rows with ``y_pred == y_true``; (N,) each."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _check_len(y_true, y_pred)
    return float(np.mean(y_true == y_pred))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence | None = None) -> float:
    """Unweighted mean over classes of ``F1 = 2·TP / (2·TP + FP + FN)`` (0 for a class never seen).

    Args:
        y_true: (N,) class labels.
        y_pred: (N,) predicted labels.
        labels: classes to average over; default the sorted union of both arrays (as
            scikit-learn's ``f1_score(average="macro")``).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    _check_len(y_true, y_pred)
    classes = np.union1d(y_true, y_pred) if labels is None else np.asarray(labels)
    scores = []
    for c in classes:
        tp = np.sum((y_pred == c) & (y_true == c))
        fp = np.sum((y_pred == c) & (y_true != c))
        fn = np.sum((y_pred != c) & (y_true == c))
        denom = 2 * tp + fp + fn
        scores.append(0.0 if denom == 0 else 2 * tp / denom)
    return float(np.mean(scores))


def binary_auroc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative) + ½ P(tie).

    Computed from average ranks (Mann-Whitney U), O(N log N).

    Args:
        y_true: (N,) 0/1 or bool.
        score: (N,) higher means more positive.

    Raises:
        DataError: only one class present (AUROC undefined).
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(score, dtype=np.float64)
    _check_len(y, s)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError("AUROC needs both positive and negative labels", reason="one_class")
    ranks = _average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def ovr_auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Macro mean over classes of the binary AUROC of class c against the rest.

    Args:
        y_true: (N,) class indices in [0, C).
        scores: (N, C) per-class scores (probabilities need not sum to 1).

    Classes absent from ``y_true`` are skipped (their AUROC is undefined).
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    vals = [binary_auroc(y == c, s[:, c]) for c in range(s.shape[1]) if 0 < np.sum(y == c) < len(y)]
    if not vals:
        raise DataError("AUROC needs at least two classes in the labels", reason="one_class")
    return float(np.mean(vals))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error, (N,) each."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    _check_len(y_true, y_pred)
    return float(np.mean(np.abs(y_true - y_pred)))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root mean squared error, (N,) each."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    _check_len(y_true, y_pred)
    return float(np.sqrt(np.mean((y_true - y_pred) ** 2)))


def classification_metrics(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy, macro_f1 and auroc of (N,) class indices and (N, C) probabilities.

    Prediction = argmax. macro-F1 averages over all C classes; AUROC is the binary AUROC of
    column 1 when C = 2, else one-vs-rest macro. AUROC is NaN when the labels hold one class.
    """
    y = np.asarray(y_true)
    p = np.asarray(probs, dtype=np.float64)
    pred = p.argmax(axis=1)
    out = {"accuracy": accuracy(y, pred), "macro_f1": macro_f1(y, pred, labels=range(p.shape[1]))}
    try:
        out["auroc"] = binary_auroc(y == 1, p[:, 1]) if p.shape[1] == 2 else ovr_auroc(y, p)
    except DataError:
        out["auroc"] = float("nan")
    return out


def multilabel_metrics(y_true: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Exact-match accuracy, macro-F1 over labels and macro AUROC over labels with both values.

    Args:
        y_true: (N, C) 0/1.
        probs: (N, C) sigmoid outputs.
        threshold: decision threshold.
    """
    y = np.asarray(y_true).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    pred = p >= threshold
    f1 = [macro_f1(y[:, c], pred[:, c], labels=[True]) for c in range(y.shape[1])]
    aucs = [binary_auroc(y[:, c], p[:, c]) for c in range(y.shape[1]) if 0 < y[:, c].sum() < len(y)]
    return {
        "accuracy": float(np.mean((pred == y).all(axis=1))),
        "macro_f1": float(np.mean(f1)),
        "auroc": float(np.mean(aucs)) if aucs else float("nan"),
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """mae and rmse of (N,) targets and (N,) or (N, 1) predictions."""
    yp = np.asarray(y_pred, float).reshape(len(y_pred), -1)[:, 0]
    return {"mae": mae(y_true, yp), "rmse": rmse(y_true, yp)}


def evaluate_tasks(
    tasks: Sequence,
    probs: Mapping[str, np.ndarray],
    targets: Mapping,
) -> dict[str, float]:
    """Metrics of every task as ``{"<task>/<metric>": value}`` over rows with a known label.

    Args:
        tasks: :class:`~modalign.fusion.heads.TaskSpec` list.
        probs: task -> (N, C) probabilities / values (e.g. ``FusionPredictor.predict``).
        targets: task -> :class:`~modalign.fusion.heads.Target` (from ``encode_targets``).
    """
    out: dict[str, float] = {}
    for spec in tasks:
        tgt = targets[spec.name]
        known = np.asarray(tgt.mask, dtype=bool)
        y = np.asarray(tgt.y)[known]
        p = np.asarray(probs[spec.name])[known]
        if len(y) == 0:
            continue
        if spec.kind == "multiclass":
            res = classification_metrics(y, p)
        elif spec.kind == "multilabel":
            res = multilabel_metrics(y, p)
        else:
            res = regression_metrics(y, p)
        out.update({f"{spec.name}/{k}": v for k, v in res.items()})
    return out


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    # Boundaries of runs of equal values in sorted order.
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], len(xs)]
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def _check_len(a: np.ndarray, b: np.ndarray) -> None:
    if len(a) != len(b):
        raise DataError(f"metric inputs have different lengths: {len(a)} vs {len(b)}", reason="bad_shape")
