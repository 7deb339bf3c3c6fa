"""Zero-shot classification against text prototypes (CLIP_benchmark convention).

Prototype of class c: the L2-normalised mean of the (unit) embeddings of its prompts, re-normalised.
Prediction: ``argmax_c  x̂ · W_c`` (the CLIP factor 100 changes nothing for accuracy). Metrics:
``accuracy`` (top-1) and ``mean_per_class_recall`` (balanced accuracy over the classes present in y).
A sample is a hit only when its true class scores strictly above every other class: a tie goes
against the true class and NaN scores rank last, so a NaN row (where ``argmax`` would pick class 0)
or a class tied with another is never a hit (the rule of ``retrieval.best_positive_ranks``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def class_prototypes(
    prompt_emb: np.ndarray, prompt_labels: Sequence[Hashable]
) -> tuple[list[Hashable], np.ndarray]:
    """Classes (sorted) and their prototype matrix (C, D) from prompt embeddings (P, D)."""
    classes = sorted(set(prompt_labels), key=lambda c: (str(type(c)), c))  # type: ignore[type-var]
    labels = np.asarray([classes.index(c) for c in prompt_labels])
    protos = np.stack([prompt_emb[labels == i].mean(0) for i in range(len(classes))])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True).clip(1e-12)
    return classes, protos


def zero_shot_metrics(
    emb: np.ndarray, labels: Sequence[Hashable], classes: Sequence[Hashable], prototypes: np.ndarray
) -> dict[str, float]:
    """Top-1 accuracy and mean per-class recall of ``emb`` (N, D) classified by ``prototypes``."""
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index.get(c, -1) for c in labels], dtype=np.int64)
    with np.errstate(invalid="ignore"):  # NaN rows stay NaN, then never hit
        scores = emb @ prototypes.T  # (N, C)
    true = np.take_along_axis(scores, y.clip(0)[:, None], axis=1)  # (N, 1)
    # NaN >= x is False: a NaN class never beats the true class, a NaN true class never hits
    others = (scores >= true) & (np.arange(scores.shape[1])[None, :] != y[:, None])  # (N, C)
    hit = (y >= 0) & ~np.isnan(true[:, 0]) & ~others.any(1)
    recalls = [float(hit[y == c].mean()) for c in np.unique(y) if c >= 0]
    return {
        "accuracy": float(hit.mean()) if len(y) else float("nan"),
        "mean_per_class_recall": float(np.mean(recalls)) if recalls else float("nan"),
    }
