"""Robustness of a prediction model to missing modalities.

Three views, all driven by a ``predict(inputs, present) -> {task: (N, C)}`` callable (e.g.
:meth:`modalign.fusion.predictor.FusionPredictor.predict`) so any model can be evaluated:

* :func:`subset_table`: the metrics with only a subset of modalities kept, for every non-empty
  subset (2^M - 1 of them), or for ``cap`` distinct random subsets (always including the full set
  and every single modality) when there are more than ``cap``;
* :func:`mcar_curve`: metrics when each (row, modality) is dropped independently with rate r
  (missing completely at random), r = 0, 0.1, ..., 0.9;
* :func:`label_dependent_missingness` / :func:`mnar_evaluation`: missing-not-at-random, where
  the probability of dropping a modality depends on the row's label, so a model that learned the
  training pattern is tested on a different one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from modalign.errors import ConfigError
from modalign.evaluation.prediction import evaluate_tasks

PredictFn = Callable[[Mapping[str, np.ndarray], Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
MCAR_RATES = tuple(round(0.1 * i, 1) for i in range(10))


def modality_subsets(names: Sequence[str], cap: int = 64, seed: int = 0) -> list[tuple[str, ...]]:
    """Non-empty subsets of ``names``: all of them, or ``cap`` distinct ones sampled uniformly.

    When sampling, the full set and the singletons are always included (they anchor the table),
    then random distinct subsets fill up to ``cap``. Order: by size, then by position in ``names``.
    """
    m = len(names)
    if m == 0:
        raise ConfigError("modality_subsets needs at least one modality")
    if cap < 1:
        raise ConfigError(f"cap must be >= 1, got {cap}")
    if 2**m - 1 <= cap:
        chosen = [c for r in range(1, m + 1) for c in itertools.combinations(range(m), r)]
    else:
        rng = np.random.default_rng(seed)
        picked: set[tuple[int, ...]] = {tuple(range(m))}
        for i in range(m):
            if len(picked) < cap:
                picked.add((i,))
        while len(picked) < cap:
            bits = rng.random(m) < 0.5
            if bits.any():
                picked.add(tuple(int(i) for i in np.flatnonzero(bits)))
        chosen = sorted(picked, key=lambda c: (len(c), c))
    return [tuple(names[i] for i in c) for c in chosen]


def _base_present(
    inputs: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    out = {}
    for m, x in inputs.items():
        p = (
            np.ones(len(x), dtype=bool)
            if present is None or m not in present
            else np.asarray(present[m], bool)
        )
        out[m] = p
    return out


def subset_table(
    predict: PredictFn,
    inputs: Mapping[str, np.ndarray],
    tasks: Sequence,
    targets: Mapping,
    present: Mapping[str, np.ndarray] | None = None,
    cap: int = 64,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Metrics with only each subset of modalities kept.

    Args:
        predict: model's prediction function.
        inputs: modality -> (N, F_m).
        tasks: task specs.
        targets: task -> Target (labels).
        present: optional modality -> (N,) bool (the data's own missingness, kept).
        cap: at most this many subsets (see :func:`modality_subsets`).
        seed: subset sampling seed.

    Returns:
        One row per subset: ``{"modalities": [...], "<task>/<metric>": value, ...}``.
    """
    base = _base_present(inputs, present)
    rows = []
    for subset in modality_subsets(list(inputs), cap, seed):
        p = {m: base[m] if m in subset else np.zeros_like(base[m]) for m in inputs}
        rows.append({"modalities": list(subset), **evaluate_tasks(tasks, predict(inputs, p), targets)})
    return rows


def mcar_curve(
    predict: PredictFn,
    inputs: Mapping[str, np.ndarray],
    tasks: Sequence,
    targets: Mapping,
    present: Mapping[str, np.ndarray] | None = None,
    rates: Sequence[float] = MCAR_RATES,
    repeats: int = 1,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Metrics when each (row, modality) is dropped independently with probability r.

    Rows may lose every modality (they then get the model's prior prediction). With
    ``repeats > 1`` the metrics are averaged over independent draws.

    Returns:
        One row per rate: ``{"rate": r, "<task>/<metric>": value, ...}``.
    """
    base = _base_present(inputs, present)
    rng = np.random.default_rng(seed)
    out = []
    for r in rates:
        if not 0.0 <= r <= 1.0:
            raise ConfigError(f"MCAR rate must be in [0, 1], got {r}")
        acc: dict[str, list[float]] = {}
        for _ in range(repeats):
            p = {m: base[m] & (rng.random(len(base[m])) >= r) for m in inputs}
            for k, v in evaluate_tasks(tasks, predict(inputs, p), targets).items():
                acc.setdefault(k, []).append(v)
        out.append({"rate": float(r), **{k: float(np.mean(v)) for k, v in acc.items()}})
    return out


def label_dependent_missingness(
    labels: np.ndarray,
    n_or_present: Mapping[str, np.ndarray],
    drop: Mapping[str, Mapping[Any, float]],
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """MNAR masks: drop modality m of a row with probability ``drop[m][label]``.

    Args:
        labels: (N,) labels (the class values used as keys of ``drop``).
        n_or_present: modality -> (N,) bool present masks to start from.
        drop: modality -> {label value: drop probability}; unlisted modalities/labels keep 0.
        seed: RNG seed.

    Returns:
        modality -> (N,) bool, a subset of the given masks.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(labels)
    out = {}
    for m, p in n_or_present.items():
        probs = np.array([float(drop.get(m, {}).get(v.item() if hasattr(v, "item") else v, 0.0)) for v in y])
        if np.any((probs < 0) | (probs > 1)):
            raise ConfigError(f"drop probabilities for {m!r} must be in [0, 1]")
        out[m] = np.asarray(p, bool) & (rng.random(len(y)) >= probs)
    return out


def mnar_evaluation(
    predict: PredictFn,
    inputs: Mapping[str, np.ndarray],
    tasks: Sequence,
    targets: Mapping,
    labels: np.ndarray,
    drop: Mapping[str, Mapping[Any, float]],
    present: Mapping[str, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """Metrics under label-dependent test-time missingness (label_dependent_missingness)."""
    p = label_dependent_missingness(labels, _base_present(inputs, present), drop, seed)
    res = evaluate_tasks(tasks, predict(inputs, p), targets)
    res["missing_fraction"] = float(1 - np.mean([v.mean() for v in p.values()]))
    return res
