"""Retrieval and zero-shot metrics against brute-force definitions (EVALUATION.md §0-§2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.evaluation.retrieval import best_positive_ranks, retrieval_metrics
from modalign.evaluation.zero_shot import class_prototypes, zero_shot_metrics


def brute_force_rank(scores: np.ndarray, positives: list[int]) -> int:
    """Min over positives of #(strictly higher) + #(tied negatives); -1 without positives.

    Ties go against the positive (tests/test_nonfinite.py also checks NaN scores).
    """
    if not positives:
        return -1
    ranks = []
    for p in positives:
        higher = sum(1 for c in range(len(scores)) if scores[c] > scores[p])
        tied_negatives = sum(1 for c in range(len(scores)) if c not in positives and scores[c] == scores[p])
        ranks.append(higher + tied_negatives)
    return min(ranks)


@pytest.mark.parametrize("quantise", [False, True])
def test_ranks_match_brute_force_with_ties_and_several_positives(quantise: bool) -> None:
    rng = np.random.default_rng(0)
    q = rng.standard_normal((23, 5)).astype(np.float32)
    c = rng.standard_normal((31, 5)).astype(np.float32)
    if quantise:  # coarse values create many exact score ties
        q, c = np.round(q), np.round(c)
    qk = list(rng.integers(0, 9, 23))
    ck = list(rng.integers(0, 7, 31))  # some query keys (7, 8) have no positive
    got = best_positive_ranks(torch.from_numpy(q), torch.from_numpy(c), qk, ck, chunk_size=4)
    scores = q @ c.T
    want = [brute_force_rank(scores[i], [j for j in range(31) if ck[j] == qk[i]]) for i in range(23)]
    assert got.tolist() == want
    assert -1 in want and any(r > 0 for r in want)


def test_recall_is_hit_rate_and_median_rank_is_one_based() -> None:
    ranks = np.array([0, 0, 3, 7, 12, -1])
    m = retrieval_metrics(ranks, ks=(1, 5, 10))
    assert m["R@1"] == pytest.approx(2 / 5)
    assert m["R@5"] == pytest.approx(3 / 5)
    assert m["R@10"] == pytest.approx(4 / 5)
    assert m["median_rank"] == 4.0  # floor(median([0, 0, 3, 7, 12])) + 1


def test_identity_pairs_give_perfect_recall() -> None:
    x = torch.nn.functional.normalize(torch.randn(50, 8), dim=1)
    ranks = best_positive_ranks(x, x, list(range(50)), list(range(50)))
    assert retrieval_metrics(ranks)["R@1"] == 1.0


def test_zero_shot_against_brute_force_and_balanced_accuracy() -> None:
    rng = np.random.default_rng(1)
    prompts = rng.standard_normal((7, 4))
    prompts /= np.linalg.norm(prompts, axis=1, keepdims=True)
    prompt_labels = ["a", "a", "b", "c", "c", "c", "d"]
    emb = rng.standard_normal((40, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    y = list(rng.choice(["a", "b", "c"], 40))  # class "d" is never a true label
    classes, protos = class_prototypes(prompts, prompt_labels)
    m = zero_shot_metrics(emb, y, classes, protos)
    # brute force: prototype = renormalised mean of the class's prompt vectors
    pred = []
    for e in emb:
        best, best_s = None, -np.inf
        for c in ["a", "b", "c", "d"]:
            v = prompts[[i for i, lab in enumerate(prompt_labels) if lab == c]].mean(0)
            s = float(e @ (v / np.linalg.norm(v)))
            if s > best_s:
                best, best_s = c, s
        pred.append(best)
    acc = np.mean([p == t for p, t in zip(pred, y)])
    recalls = [np.mean([p == c for p, t in zip(pred, y) if t == c]) for c in sorted(set(y))]
    assert m["accuracy"] == pytest.approx(acc)
    assert m["mean_per_class_recall"] == pytest.approx(np.mean(recalls))
    sklearn = pytest.importorskip("sklearn.metrics")
    assert m["mean_per_class_recall"] == pytest.approx(sklearn.balanced_accuracy_score(y, pred))


def test_higher_order_ranks_use_symile_mip_scores() -> None:
    from modalign.evaluation.retrieval import higher_order_ranks
    from modalign.objectives._higher_order import mip_scores

    g = torch.Generator().manual_seed(3)
    a, b, c = (torch.nn.functional.normalize(torch.randn(17, 6, generator=g), dim=1) for _ in range(3))
    keys = list(range(17))
    got = higher_order_ranks([a, b], c, keys, keys)
    scores = mip_scores([a, b], c).numpy()  # the objective library's independent MIP
    want = [brute_force_rank(scores[i], [i]) for i in range(17)]
    assert got.tolist() == want
