"""Uncertainty: bootstrap intervals over queries, paired differences, and seeds as mean ± std.

The bootstrap resamples queries with replacement (Efron & Tibshirani, *An Introduction to the
Bootstrap*, 1993, percentile interval). A resample is drawn as multinomial counts per query, so the
mean of every metric over all resamples is one matrix product; medians use the counts to find the
middle order statistics. Paired differences resample the *same* queries for both runs (Koehn,
*Statistical significance tests for machine translation evaluation*, EMNLP 2004), and a difference
is significant at 95% when its interval excludes 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from modalign.evaluation.zero_shot import balanced_recall

N_BOOTSTRAP = 1000
_BLOCK = 50  # resamples drawn at once: (block, Q) counts bound the memory


def _resample_counts(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of (b, n) multinomial counts, one row per resample of n items, drawn lazily: only one
    block is held at a time (1000 resamples of 100,000 queries would be 800 MB at once)."""
    rng = np.random.default_rng(seed)
    left = n_boot
    while left > 0:
        b = min(_BLOCK, left)
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
        left -= b


def _median_from_counts(sorted_values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(b,) median of each resample given per-item counts (b, n) over ``sorted_values`` (n,)."""
    n = int(counts[0].sum())
    cum = np.cumsum(counts, axis=1)  # (b, n)
    lo = sorted_values[(cum <= (n - 1) // 2).sum(1)]  # order statistic (n-1)//2 (0-based)
    hi = sorted_values[(cum <= n // 2).sum(1)]
    return (lo + hi) / 2


def bootstrap_stats(values: np.ndarray, kind: str, counts_blocks: Iterable[np.ndarray]) -> np.ndarray:
    """(n_boot,) statistic of every resample: ``mean`` or open_clip's 1-based ``median_rank``."""
    if kind == "mean":
        return np.concatenate([c @ values / values.shape[0] for c in counts_blocks])
    if kind == "balanced":  # (n, 2) rows of (hit, class): mean recall over the classes drawn
        return np.array([balanced_recall(values, row) for c in counts_blocks for row in c])
    order = np.argsort(values, kind="stable")
    med = np.concatenate([_median_from_counts(values[order], c[:, order]) for c in counts_blocks])
    return np.floor(med) + 1


def _kind(key: str) -> str:
    if key.endswith("mean_per_class_recall"):
        return "balanced"
    return "median" if key.endswith("median_rank") else "mean"


def _statistic(values: np.ndarray, kind: str) -> float:
    if kind == "mean":
        return float(values.mean())
    if kind == "balanced":
        return balanced_recall(values)
    return float(np.floor(np.median(values)) + 1)


def bootstrap_ci(
    per_query: Mapping[str, np.ndarray], n_boot: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile interval of each metric from its per-query values (``*median_rank``: ranks).

    ``per_query`` maps a metric key to its (Q,) values; keys whose values share a length are
    resampled with the same queries. ``mean_rank`` values are 1-based ranks, so their mean is it.
    """
    by_length: dict[int, list[tuple[str, np.ndarray]]] = {}
    for key, values in per_query.items():
        v = np.asarray(values, dtype=np.float64)
        if v.shape[0]:
            by_length.setdefault(v.shape[0], []).append((key, v))
    stats: dict[str, list[np.ndarray]] = {}
    for n, items in by_length.items():  # each block of resamples serves every key of its length
        for block in _resample_counts(n, n_boot, seed):
            for key, v in items:
                stats.setdefault(key, []).append(bootstrap_stats(v, _kind(key), [block]))
    tail = (1 - level) / 2 * 100
    out: dict[str, tuple[float, float]] = {}
    for key in per_query:
        if key in stats:
            s = np.concatenate(stats[key])
            # rounded: a resample mean of identical values must not print as 0.9999999999999998
            out[key] = (
                round(float(np.percentile(s, tail)), 12),
                round(float(np.percentile(s, 100 - tail)), 12),
            )
    return out


def paired_difference(
    a: np.ndarray, b: np.ndarray, key: str, n_boot: int = N_BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> dict[str, float | bool]:
    """``b − a`` on the same queries: the difference, its paired-bootstrap interval, significance.

    Raises:
        ValueError: the two runs were not scored on the same number of queries.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{key}: {a.shape[0]} vs {b.shape[0]} queries; a paired test needs the same queries")
    kind = _kind(key)
    diffs = np.concatenate(
        [
            bootstrap_stats(b, kind, [block]) - bootstrap_stats(a, kind, [block])
            for block in _resample_counts(a.shape[0], n_boot, seed)
        ]
    )
    tail = (1 - level) / 2 * 100
    lo, hi = float(np.percentile(diffs, tail)), float(np.percentile(diffs, 100 - tail))
    return {
        "diff": _statistic(b, kind) - _statistic(a, kind),
        "ci_low": lo,
        "ci_high": hi,
        "significant": bool(lo > 0 or hi < 0),
    }


def aggregate_seeds(runs: Sequence[Mapping[str, float | None]]) -> dict[str, tuple[float, float, int]]:
    """``{key: (mean, std, n)}`` over runs of several seeds (sample std, ddof=1; 0 for one run)."""
    keys = sorted({k for r in runs for k, v in r.items() if isinstance(v, (int, float))})
    out = {}
    for k in keys:
        vals = np.array([float(r[k]) for r in runs if isinstance(r.get(k), (int, float))])  # type: ignore[arg-type]
        vals = vals[np.isfinite(vals)]
        if vals.size:
            std = float(vals.std(ddof=1)) if vals.size > 1 else 0.0
            out[k] = (float(vals.mean()), std, int(vals.size))
    return out


def per_query_statistic(key: str) -> Callable[[np.ndarray], float]:
    """The function that turns a metric's per-query values into the metric."""
    kind = _kind(key)
    return lambda v: _statistic(np.asarray(v, np.float64), kind)
