"""Chance levels, bootstrap intervals, paired differences, seeds and ``modalign compare``."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from modalign.cli import app
from modalign.evaluation.chance import retrieval_chance, zero_shot_chance
from modalign.evaluation.evaluate import Evaluation
from modalign.evaluation.report import write_report
from modalign.evaluation.retrieval import retrieval_metrics
from modalign.evaluation.uncertainty import (
    _resample_counts,
    aggregate_seeds,
    bootstrap_ci,
    bootstrap_stats,
    paired_difference,
)


@pytest.mark.parametrize("n_pos", [1, 2, 3])
def test_chance_levels_are_the_average_over_every_ranking(n_pos: int) -> None:
    """Every permutation of 6 candidates, scored through the library: the mean is the chance level."""
    c, ks = 6, (1, 2, 5)
    positives = [list(range(n_pos))]
    values: dict[str, list[float]] = {}
    ranks = []
    for perm in itertools.permutations(range(c)):
        query = np.asarray(perm, np.float32)[None, :]  # score of candidate j = perm[j]: one ranking
        m = retrieval_metrics(query, np.eye(c, dtype=np.float32), positives, ks, normalize=False)
        for k, v in m.items():
            values.setdefault(k, []).append(v)
        ranks.append(m["mean_rank"])  # one query: its 1-based best rank
    chance = retrieval_chance(np.array([n_pos]), c, ks)
    for key, value in chance.items():
        if key == "median_rank":  # the lower median of the pooled 1-based rank
            assert value == min(r for r in range(1, c + 1) if np.mean(np.array(ranks) <= r) >= 0.5)
        else:
            assert value == pytest.approx(np.mean(values[key]), abs=1e-12), key
    assert retrieval_chance(np.array([1] * 9 + [0]), 10, (1,))["R@1"] == pytest.approx(0.1)
    assert zero_shot_chance(10) == {"accuracy": 0.1, "top5_accuracy": 0.5, "mean_per_class_recall": 0.1}


def test_bootstrap_statistics_equal_the_expanded_resamples() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(0, 30, 41).astype(np.float64)
    blocks = list(_resample_counts(41, 120, seed=3))
    samples = [np.repeat(np.arange(41), row.astype(int)) for b in blocks for row in b]
    assert np.allclose(bootstrap_stats(values, "mean", blocks), [values[s].mean() for s in samples])
    medians = [math.floor(np.median(values[s])) + 1 for s in samples]
    assert bootstrap_stats(values, "median", blocks).tolist() == medians
    sklearn = pytest.importorskip("sklearn.metrics")
    hit_class = np.stack([rng.integers(0, 2, 41), rng.integers(0, 4, 41)], 1).astype(np.float64)
    y = hit_class[:, 1]
    pred = np.where(hit_class[:, 0] > 0, y, -1)  # a miss predicts a class that is never true
    want = [sklearn.balanced_accuracy_score(y[s], pred[s]) for s in samples]
    assert np.allclose(bootstrap_stats(hit_class, "balanced", blocks), want)


def test_bootstrap_interval_has_the_binomial_width() -> None:
    hits = (np.random.default_rng(1).random(400) < 0.3).astype(np.float64)
    lo, hi = bootstrap_ci({"R@1": hits}, n_boot=2000)["R@1"]
    p = hits.mean()
    assert lo < p < hi
    assert hi - lo == pytest.approx(2 * 1.96 * math.sqrt(p * (1 - p) / 400), rel=0.15)


def test_paired_difference_and_seeds() -> None:
    rng = np.random.default_rng(2)
    a = (rng.random(300) < 0.5).astype(np.float64)
    same = paired_difference(a, a, "R@1")
    assert same == {"diff": 0.0, "ci_low": 0.0, "ci_high": 0.0, "significant": False}
    better = np.maximum(a, rng.random(300) < 0.3)  # b fixes about 30% of a's misses
    d = paired_difference(a, better, "R@1")
    assert d["significant"] and d["ci_low"] > 0 and d["diff"] == pytest.approx(better.mean() - a.mean())
    with pytest.raises(ValueError, match="same queries"):
        paired_difference(a, a[:10], "R@1")
    runs = [{"R@1": 0.5, "x": None}, {"R@1": 0.7}, {"R@1": 0.6}]
    assert aggregate_seeds(runs)["R@1"] == pytest.approx((0.6, np.std([0.5, 0.7, 0.6], ddof=1), 3))


def _fake_run(path: Path, hits: np.ndarray) -> None:
    ev = Evaluation()
    ev.per_query["retrieval/a->b/R@1"] = hits
    ev.chance["retrieval/a->b/R@1"] = 0.1
    metrics = {"retrieval/a->b/R@1": float(hits.mean())}
    write_report(path / "report.json", metrics, {"split": "test", "_evaluation": ev})


def test_compare_prints_seeds_and_marks_significant_differences(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    base = (rng.random(200) < 0.4).astype(np.float64)
    for name, hits in {
        "a1": base,
        "a2": base,
        "b": np.maximum(base, rng.random(200) < 0.5),
        "c": base[::-1].copy(),  # same mean, different queries: no significant difference expected
    }.items():
        _fake_run(tmp_path / name, hits)
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["chance"] == {"retrieval/a->b/R@1": 0.1}
    assert (
        report["ci95"]["retrieval/a->b/R@1"][0]
        < report["retrieval/a->b/R@1"]
        < report["ci95"]["retrieval/a->b/R@1"][1]
    )
    runs = [f"{tmp_path / 'a1'},{tmp_path / 'a2'}", str(tmp_path / "b"), str(tmp_path / "c")]
    result = CliRunner().invoke(app, ["compare", *runs], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "retrieval/a->b/R@1" in x)
    cells = [c.strip() for c in line.split("│") if c.strip()]
    assert cells[1] == "0.1000" and "(2 seeds)" in result.output
    assert cells[2] == f"{base.mean():.4f} ± 0.0000"  # two identical seeds
    assert cells[4].endswith("*") and not cells[6].endswith("*")  # b is better, c is not
    missing = CliRunner().invoke(app, ["compare", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "report.json" in missing.output


def test_bootstrap_holds_one_block_of_resamples_at_a_time() -> None:
    """1000 resamples of 20,000 queries are 160 MB of counts at once; drawn block by block, the
    peak stays a small multiple of one (50, 20,000) block whatever the number of metrics."""
    import tracemalloc

    rng = np.random.default_rng(0)
    per_query = {f"m{i}": rng.random(20_000) for i in range(4)}
    tracemalloc.start()
    bootstrap_ci(per_query, n_boot=1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"
