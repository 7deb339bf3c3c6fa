"""Prediction metrics vs brute-force definitions and scikit-learn; robustness helpers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from modalign.errors import DataError
from modalign.evaluation import prediction as P
from modalign.evaluation import robustness as R
from modalign.tasks import TaskSpec, encode_targets

sk = pytest.importorskip("sklearn.metrics")


def brute_auroc(y, s):
    pos = [v for v, t in zip(s, y, strict=True) if t]
    neg = [v for v, t in zip(s, y, strict=True) if not t]
    total = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return total / (len(pos) * len(neg))


def brute_macro_f1(y, p, classes):
    out = []
    for c in classes:
        tp = sum(1 for a, b in zip(y, p, strict=True) if a == c and b == c)
        fp = sum(1 for a, b in zip(y, p, strict=True) if a != c and b == c)
        fn = sum(1 for a, b in zip(y, p, strict=True) if a == c and b != c)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        out.append(2 * prec * rec / (prec + rec) if prec + rec else 0.0)
    return sum(out) / len(out)


@pytest.mark.parametrize("seed", range(4))
def test_binary_auroc_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(37) < 0.4
    y[:2] = [True, False]
    s = np.round(rng.random(37), 1)  # many ties
    got = P.binary_auroc(y, s)
    assert math.isclose(got, brute_auroc(y, s), rel_tol=1e-12)
    assert math.isclose(got, sk.roc_auc_score(y, s), rel_tol=1e-12)


def test_ovr_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 60)
    p = rng.random((60, 4))
    p /= p.sum(1, keepdims=True)
    ref = sk.roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert math.isclose(P.ovr_auroc(y, p), ref, rel_tol=1e-12)
    brute = np.mean([brute_auroc(y == c, p[:, c]) for c in range(4)])
    assert math.isclose(P.ovr_auroc(y, p), brute, rel_tol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_accuracy_and_macro_f1(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 50)
    p = rng.integers(0, 5, 50)  # a class never in y
    assert math.isclose(P.accuracy(y, p), sk.accuracy_score(y, p))
    classes = sorted(set(y) | set(p))
    assert math.isclose(P.macro_f1(y, p), brute_macro_f1(y, p, classes), rel_tol=1e-12)
    assert math.isclose(P.macro_f1(y, p), sk.f1_score(y, p, average="macro", zero_division=0), rel_tol=1e-12)


def test_mae_rmse():
    rng = np.random.default_rng(0)
    y, p = rng.normal(size=30), rng.normal(size=30)
    brute = sum(abs(a - b) for a, b in zip(y, p, strict=True)) / 30
    assert math.isclose(P.mae(y, p), brute, rel_tol=1e-12)
    assert math.isclose(P.mae(y, p), sk.mean_absolute_error(y, p), rel_tol=1e-12)
    assert math.isclose(P.rmse(y, p), math.sqrt(sk.mean_squared_error(y, p)), rel_tol=1e-12)


def test_auroc_one_class_is_a_data_error():
    with pytest.raises(DataError):
        P.binary_auroc([1, 1, 1], [0.1, 0.2, 0.3])


def test_evaluate_tasks_skips_missing_labels():
    tasks = [TaskSpec("y", classes=(0, 1)), TaskSpec("r", "regression")]
    t = encode_targets(tasks, {"y": [0, 1, None, 1], "r": [1.0, None, 2.0, 3.0]})
    probs = {
        "y": np.array([[0.8, 0.2], [0.3, 0.7], [0.0, 1.0], [0.6, 0.4]]),
        "r": np.array([[1.0], [9], [2.5], [3]]),
    }
    out = P.evaluate_tasks(tasks, probs, t)
    assert math.isclose(out["y/accuracy"], 2 / 3)
    assert math.isclose(out["y/auroc"], 1.0)  # positives 0.7, 0.4 both above negative 0.2
    assert math.isclose(out["r/mae"], 0.5 / 3)


def test_subsets_all_and_capped():
    subs = R.modality_subsets(["a", "b", "c"])
    assert len(subs) == 7 and len(set(subs)) == 7
    assert set(subs) == {c for r in range(1, 4) for c in itertools.combinations("abc", r)}
    names = [f"m{i}" for i in range(8)]  # 255 subsets > 64
    capped = R.modality_subsets(names, cap=64, seed=1)
    assert len(capped) == 64 and len(set(capped)) == 64
    assert tuple(names) in capped and all((n,) in capped for n in names)
    assert capped == R.modality_subsets(names, cap=64, seed=1)


def test_subset_table_and_mcar_curve_drive_predict_with_masks():
    calls = []

    def predict(inputs, present):
        calls.append({m: v.copy() for m, v in present.items()})
        # "model": probability of class 1 = fraction of present modalities
        frac = np.mean([present[m] for m in inputs], axis=0)
        return {"y": np.stack([1 - frac, frac], axis=1)}

    tasks = [TaskSpec("y", classes=(0, 1))]
    x = {"a": np.zeros((50, 2)), "b": np.zeros((50, 1))}
    t = encode_targets(tasks, {"y": [0, 1] * 25})
    rows = R.subset_table(predict, x, tasks, t)
    assert [r["modalities"] for r in rows] == [["a"], ["b"], ["a", "b"]]
    assert not calls[0]["b"].any() and calls[0]["a"].all()
    curve = R.mcar_curve(predict, x, tasks, t, rates=(0.0, 0.5, 0.9), seed=0)
    assert [c["rate"] for c in curve] == [0.0, 0.5, 0.9]
    frac_kept = [np.mean([c[m].mean() for m in c]) for c in calls[3:]]
    assert frac_kept[0] == 1.0 and abs(frac_kept[1] - 0.5) < 0.15 and frac_kept[2] < 0.25


def test_label_dependent_missingness():
    y = np.array([0, 1] * 500)
    p = R.label_dependent_missingness(
        y, {"a": np.ones(1000, bool), "b": np.ones(1000, bool)}, {"a": {1: 0.8, 0: 0.1}}, seed=0
    )
    assert p["b"].all()
    assert abs((~p["a"][y == 1]).mean() - 0.8) < 0.06 and abs((~p["a"][y == 0]).mean() - 0.1) < 0.05
