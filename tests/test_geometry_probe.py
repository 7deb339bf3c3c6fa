"""Geometry metrics against their definitions (EVALUATION.md §6) and the CPU linear probe (§3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalign.evaluation import linear_probe as lp
from modalign.evaluation.geometry import geometry_metrics, logistic_regression, uniformity


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_geometry_matches_brute_force_definitions() -> None:
    rng = np.random.default_rng(0)
    x = unit(rng.standard_normal((30, 5)))
    y = unit(x + 0.7 * rng.standard_normal((30, 5)) + 0.5)  # shifted: a modality gap
    m = geometry_metrics(x, y)
    n = len(x)
    sq = lambda a, b: float(((a - b) ** 2).sum())  # noqa: E731
    u = math.log(np.mean([math.exp(-2 * sq(x[i], x[j])) for i in range(n) for j in range(i + 1, n)]))
    cross = math.log(np.mean([math.exp(-2 * sq(x[i], y[j])) for i in range(n) for j in range(n) if i != j]))
    cx, cy = x.mean(0), y.mean(0)
    assert uniformity(x) == pytest.approx(u, abs=1e-9)
    assert m["cross_uniformity"] == pytest.approx(cross, abs=1e-9)
    assert m["gap"] == pytest.approx(np.linalg.norm(cx - cy), abs=1e-9)
    assert m["centroid_cosine"] == pytest.approx(cx @ cy / np.linalg.norm(cx) / np.linalg.norm(cy), abs=1e-9)
    assert m["alignment"] == pytest.approx(np.mean([sq(a, b) for a, b in zip(x, y)]), abs=1e-9)
    # hand checks of the reference: x = y, antipodal pairs
    same = geometry_metrics(x, x)
    assert same["gap"] == pytest.approx(0, abs=1e-12) and same["alignment"] == pytest.approx(0, abs=1e-12)
    assert same["centroid_cosine"] == pytest.approx(1.0)
    assert geometry_metrics(x, -x)["alignment"] == pytest.approx(4.0)


def test_separability_is_half_without_a_gap_and_one_with_a_full_gap() -> None:
    rng = np.random.default_rng(1)
    a, b = unit(rng.standard_normal((500, 6))), unit(rng.standard_normal((500, 6)))
    assert abs(geometry_metrics(a, b)["separability"] - 0.5) < 0.1
    cone = np.array([3.0, 0, 0, 0, 0, 0])  # two opposite caps of the sphere: fully separable
    left, right = (unit(rng.standard_normal((500, 6)) * 0.2 + s * cone) for s in (-1, 1))
    assert geometry_metrics(left, right)["separability"] == 1.0


def test_logistic_regression_equals_scikit_learns_default() -> None:
    sk = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((200, 4))
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 * rng.standard_normal(200) > 0.2).astype(int)
    w, b = logistic_regression(torch.from_numpy(x), torch.from_numpy(y))
    ref = sk.LogisticRegression(tol=1e-10, max_iter=1000).fit(x, y)
    assert np.allclose(w.numpy(), ref.coef_[0], atol=1e-4) and float(b) == pytest.approx(
        ref.intercept_[0], abs=1e-4
    )


def blobs(rng: np.random.Generator, n: int, centers: np.ndarray) -> tuple[np.ndarray, list[int]]:
    y = rng.integers(0, len(centers), n)
    return centers[y] + 0.8 * rng.standard_normal((n, centers.shape[1])), y.tolist()


def test_linear_probe_matches_a_scikit_learn_oracle_and_searches_the_documented_grid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((6, 8)) * 1.5
    (tx, ty), (vx, vy), (sx, sy) = (blobs(rng, n, centers) for n in (240, 120, 300))
    tried: list[float] = []
    real = lp.train_probe

    def spy(x: torch.Tensor, y: torch.Tensor, c: int, wd: float, s: lp.ProbeSettings) -> torch.nn.Linear:
        tried.append(wd)
        return real(x, y, c, wd, s)

    monkeypatch.setattr(lp, "train_probe", spy)
    m = lp.linear_probe(tx, ty, sx, sy, vx, vy).metrics
    coarse = [lp.WEIGHT_DECAYS[i] for i in range(0, 97, 16)]
    assert tried[:7] == coarse  # the 7 coarse points are exact members of the 97-point grid
    assert m["weight_decay"] in lp.WEIGHT_DECAYS and tried[-1] == m["weight_decay"]  # final fit
    assert len(tried) <= 7 + 4 * 2 + 1  # each refinement trains at most its two new neighbours
    sk = pytest.importorskip("sklearn.linear_model")
    norm = lambda a: unit(np.asarray(a))  # noqa: E731
    oracle = sk.LogisticRegression(max_iter=2000).fit(norm(np.vstack([tx, vx])), ty + vy)
    oracle_acc = float((oracle.predict(norm(sx)) == np.asarray(sy)).mean())
    assert abs(m["lp_acc1"] - oracle_acc) <= 0.05, (m, oracle_acc)
    assert m["lp_acc5"] >= m["lp_acc1"] and 0 <= m["lp_mean_per_class_recall"] <= 1


def test_blind_pairs_are_mined_blockwise_and_scored_mmvp_style() -> None:
    from modalign.evaluation.blind_pairs import mine_blind_pairs, mmvp_score

    rng = np.random.default_rng(5)
    a = unit(rng.standard_normal((40, 8)))
    b = unit(rng.standard_normal((40, 8)))
    planted = [(3, 17), (5, 30), (21, 22)]
    for i, j in planted:  # near-identical in A, opposite in B
        a[j] = unit(a[i][None] + 0.01 * rng.standard_normal((1, 8)))[0]
        b[j] = -b[i]
    ca, cb = a @ a.T, b @ b.T
    want = [(i, j) for i in range(40) for j in range(i + 1, 40) if ca[i, j] > 0.95 and cb[i, j] < 0.6]
    assert set(planted) <= set(want)
    for block in (1, 7, 1024):  # the block size changes nothing
        assert mine_blind_pairs(a, b, block=block) == want
    top = mine_blind_pairs(a, b, top_k=2)
    assert top == sorted(want, key=lambda p: -(ca[p] - cb[p]))[:2]
    assert mine_blind_pairs(a, b, top_k=2, block=3) == top  # only the best 2 held between blocks
    groups = ["x"] * 40
    groups[17] = "y"  # same group never pairs: only pairs with item 17 remain
    assert mine_blind_pairs(a, b, groups=groups) == [p for p in want if 17 in p]
    # MMVP: a pair counts only when both statements pick their own item; a tie is wrong
    items = np.eye(4)
    statements = np.array([[1, 0.2, 0, 0], [0.3, 1, 0, 0], [0, 0, 1, 0.5], [0, 0, 0.5, 1]])
    statements[3] = [0, 0, 1, 0.2]  # statement 3 prefers item 2: the second pair fails
    assert mmvp_score(items, statements, [(0, 1), (2, 3)]) == {"score": 50.0, "n_pairs": 2.0, "chance": 25.0}
    tie = np.array([[1.0, 1.0, 0, 0], [0, 1.0, 0, 0]])
    assert mmvp_score(np.eye(4)[:2], tie[:, :4], [(0, 1)])["score"] == 0.0
