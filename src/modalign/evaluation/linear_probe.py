"""Linear probe on frozen embeddings, on the CPU, with CLIP_benchmark's protocol (EVALUATION.md §3).

One ``Linear(D, C)`` trained with AdamW and cross-entropy under a cosine learning-rate schedule
(no warm-up), 10 epochs, lr 0.1, batch 64, seeded. With a validation split, the weight decay is
chosen from 97 log-spaced values in [1e-6, 1e2]: 7 coarse points, then around the best with step
spans 8, 4, 2, 1 (grid indices), keeping the first best on validation top-1 accuracy; the final
probe trains on train + val. Without one, the weight decay is 0. CLIP_benchmark asserts CUDA;
this runs anywhere. Features are L2-normalised unless ``normalize`` is off.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from modalign.evaluation.zero_shot import balanced_recall

WEIGHT_DECAYS = np.logspace(-6, 2, num=97).tolist()


@dataclass(frozen=True)
class ProbeSettings:
    """The protocol's knobs, with CLIP_benchmark's defaults."""

    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 64
    seed: int = 0
    normalize: bool = True


def _features(x: np.ndarray, normalize: bool) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    return torch.nn.functional.normalize(t, dim=1) if normalize else t


def train_probe(
    x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float, s: ProbeSettings
) -> torch.nn.Linear:
    """One probe: AdamW, cross-entropy, per-step cosine learning rate from ``s.lr`` to 0."""
    torch.manual_seed(s.seed)
    model = torch.nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(s.seed)
    n_batches = math.ceil(len(x) / s.batch_size)
    total = s.epochs * n_batches
    for epoch in range(s.epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(n_batches):
            step = epoch * n_batches + i
            for group in opt.param_groups:
                group["lr"] = 0.5 * (1 + math.cos(math.pi * step / total)) * s.lr
            idx = order[i * s.batch_size : (i + 1) * s.batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model


def _top1(model: torch.nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).double().mean())


def choose_weight_decay(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    n_classes: int,
    s: ProbeSettings,
) -> float:
    """CLIP_benchmark's search: 7 coarse grid points, then spans 8, 4, 2, 1 around the peak."""
    coarse = np.logspace(-6, 2, num=7).tolist()
    cache: dict[int, float] = {}

    def peak(indices: list[int]) -> int:
        best, best_acc = 0, 0.0  # as the reference: index 0 unless some accuracy beats 0
        for i in indices:
            if i not in cache:
                cache[i] = _top1(train_probe(*train, n_classes, WEIGHT_DECAYS[i], s), *val)
            if best_acc < cache[i]:
                best, best_acc = i, cache[i]
        return best

    best = peak([i for i, v in enumerate(WEIGHT_DECAYS) if v in coarse])
    span = 8
    while span > 0:
        best = peak([max(best - span, 0), best, min(best + span, len(WEIGHT_DECAYS) - 1)])
        span //= 2
    return WEIGHT_DECAYS[best]


@dataclass(frozen=True)
class ProbeResult:
    """A probe's test metrics and what their bootstrap intervals and chance levels need.

    Attributes:
        metrics: ``lp_acc1``, ``lp_acc5`` (NaN with < 5 classes), ``lp_mean_per_class_recall``,
            ``weight_decay``.
        per_sample: ``lp_acc1`` and ``lp_acc5`` (N,) hits; ``lp_mean_per_class_recall`` (N', 2)
            rows of (hit, class) of the test samples whose label is a training class (the form of
            :func:`~modalign.evaluation.zero_shot.zero_shot_per_sample`).
        n_classes: classes the probe chooses among.
    """

    metrics: dict[str, float]
    per_sample: dict[str, np.ndarray]
    n_classes: int


def linear_probe(
    train_x: np.ndarray,
    train_y: Sequence[Hashable],
    test_x: np.ndarray,
    test_y: Sequence[Hashable],
    val_x: np.ndarray | None = None,
    val_y: Sequence[Hashable] | None = None,
    settings: ProbeSettings | None = None,
) -> ProbeResult:
    """Train the probe (weight decay chosen on the validation split when given) and test it;
    test labels unseen in training count as misses."""
    s = settings or ProbeSettings()
    classes = sorted({*train_y, *(val_y or [])}, key=lambda c: (str(type(c)), c))  # type: ignore[type-var]
    index = {c: i for i, c in enumerate(classes)}

    def encode(labels: Sequence[Hashable]) -> torch.Tensor:
        return torch.tensor([index.get(c, -1) for c in labels], dtype=torch.int64)

    train = (_features(train_x, s.normalize), encode(train_y))
    wd = 0.0
    if val_x is not None and val_y is not None and len(val_y):
        val = (_features(val_x, s.normalize), encode(val_y))
        wd = choose_weight_decay(train, val, len(classes), s)
        train = (torch.cat([train[0], val[0]]), torch.cat([train[1], val[1]]))
    model = train_probe(*train, len(classes), wd, s)
    y = encode(test_y)
    with torch.no_grad():
        logits = model(_features(test_x, s.normalize))  # (N, C)
    true = logits.gather(1, y.clamp_min(0)[:, None])
    ahead = (logits > true) | ((logits == true) & (torch.arange(len(classes))[None, :] < y[:, None]))
    rank = torch.where(y >= 0, ahead.sum(1), len(classes)).numpy()
    known = y.numpy() >= 0
    hit1 = (rank < 1).astype(np.float64)
    per_sample = {
        "lp_acc1": hit1,
        "lp_mean_per_class_recall": np.stack([hit1[known], y.numpy()[known]], 1).astype(np.float64),
    }
    if len(classes) >= 5:
        per_sample["lp_acc5"] = (rank < 5).astype(np.float64)
    metrics = {
        "lp_acc1": float(hit1.mean()),
        "lp_acc5": float(per_sample["lp_acc5"].mean()) if "lp_acc5" in per_sample else float("nan"),
        "lp_mean_per_class_recall": balanced_recall(per_sample["lp_mean_per_class_recall"]),
        "weight_decay": wd,
    }
    return ProbeResult(metrics, per_sample, len(classes))
