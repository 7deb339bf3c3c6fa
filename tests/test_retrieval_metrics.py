"""Retrieval and zero-shot metrics against brute-force definitions (EVALUATION.md §0-§2, §4.1).

The naive references below sort every candidate by (unscorable last, score high to low, lower index
first) and compute each metric from that list with the formulas of EVALUATION.md, one query at a
time in plain Python; the library ranks in chunks without sorting every candidate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalign.evaluation import retrieval_metrics
from modalign.evaluation.retrieval import rank_metrics
from modalign.evaluation.zero_shot import class_prototypes, fill_templates, zero_shot_metrics


def naive_order(scores: np.ndarray) -> list[int]:
    """Candidates in ranking order: finite scores high to low, ties by lower index, NaN last."""

    def key(c: int) -> tuple[bool, float, int]:
        s = float(scores[c])
        return (not math.isfinite(s), 0.0 if not math.isfinite(s) else -s, c)

    return sorted(range(len(scores)), key=key)


def naive_metrics(scores: np.ndarray, positives: list[list[int]], ks: tuple[int, ...]) -> dict[str, float]:
    """Every metric by its definition, averaged over the queries that have a positive."""
    rows: list[dict[str, float]] = []
    for s, pos in zip(scores, positives):
        if not pos:
            continue
        relevant = {p for p in pos if math.isfinite(float(s[p]))}  # unscorable positives never hit
        order = naive_order(s)
        h = [1.0 if c in relevant else 0.0 for c in order]
        n_r = len(pos)
        best = next((i for i, v in enumerate(h) if v), len(order))
        row = {f"R@{k}": float(best < k) for k in ks}
        for k in ks:
            row[f"precision@{k}"] = sum(h[:k]) / k
            row[f"recall@{k}"] = sum(h[:k]) / n_r
        row["MRR@10"] = 1 / (best + 1) if best < 10 else 0.0
        dcg = sum(h[i] / math.log2(i + 2) for i in range(min(10, len(h))))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(10, n_r)))
        row["nDCG@10"] = dcg / idcg
        row["MAP@100"] = sum(h[i] * sum(h[: i + 1]) / (i + 1) for i in range(min(100, len(h)))) / min(
            100, n_r
        )
        row["rank"] = best
        rows.append(row)
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k != "rank"}
    ranks = [r["rank"] for r in rows]
    out["mean_rank"] = float(np.mean(ranks) + 1)
    out["median_rank"] = float(math.floor(np.median(ranks)) + 1)
    return out


def random_case(
    seed: int, n_q: int = 23, n_c: int = 31, ties: bool = False, max_positives: int = 4
) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    if ties:
        # signed one-hot rows: scores are exactly -1, 0 or 1 however a matmul rounds or chunks
        # (equal float scores from general vectors can differ in the last bit between matmul shapes)
        basis = np.concatenate([np.eye(6), -np.eye(6)]).astype(np.float32)
        q, c = basis[rng.integers(0, 12, n_q)], basis[rng.integers(0, 12, n_c)]
    else:
        q = rng.standard_normal((n_q, 6)).astype(np.float32)
        c = rng.standard_normal((n_c, 6)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        c /= np.linalg.norm(c, axis=1, keepdims=True)
    n_pos = rng.integers(0, max_positives + 1, n_q)  # some queries without any positive
    positives = [sorted(rng.choice(n_c, n, replace=False).tolist()) for n in n_pos]
    return q, c, positives  # type: ignore[return-value]


def scores_as_library(q: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The float32 scores the library computes (normalised rows, one matmul)."""
    qt = torch.nn.functional.normalize(torch.from_numpy(q), dim=1)
    ct = torch.nn.functional.normalize(torch.from_numpy(c), dim=1)
    return (qt @ ct.T).numpy()


@pytest.mark.parametrize("max_positives", [4, 14])  # ranked by counting; or mixed with top-k rows
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_metric_matches_its_brute_force_definition(seed: int, ties: bool, max_positives: int) -> None:
    q, c, positives = random_case(seed, ties=ties, max_positives=max_positives)
    ks = (1, 3, 5, 10)
    got = retrieval_metrics(q, c, positives, ks, chunk_bytes=2000)  # a few queries per chunk
    want = naive_metrics(scores_as_library(q, c), positives, ks)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert got["n_queries"] == sum(1 for p in positives if p)
    assert got["n_queries_without_positive"] == sum(1 for p in positives if not p)


@pytest.mark.parametrize("ties", [False, True])
def test_ranks_by_counting_equal_ranks_by_top_k(ties: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from modalign.evaluation import ranking
    from modalign.evaluation.positives import KeyPositives, as_positives

    q, c, positives = random_case(7, n_q=60, n_c=45, ties=ties, max_positives=12)
    keys_q, keys_c = [i % 5 for i in range(60)], [j % 4 for j in range(45)]
    for pos in (as_positives(positives, 60, 45), KeyPositives(keys_q, keys_c)):
        got = []
        for most in (-1, 10**9):  # every query by top-k, then every query by counting
            monkeypatch.setattr(ranking, "_MAX_COUNTED", most)
            got.append(ranking.rank_candidates(q, c, pos, 20, chunk_bytes=24 * 45 * 7))
        by_top_k, by_counting = got
        assert (by_counting.best_rank == by_top_k.best_rank).all()
        assert (by_counting.top_relevant == by_top_k.top_relevant).all()
        assert by_counting.top_relevant.any()


def test_positive_pairs_list_the_positive_mask() -> None:
    from modalign.evaluation.positives import IndexPositives, KeyPositives

    keys = KeyPositives([3, 1, 3, 2, 9], [1, 3, 3, 0, 1, 3])
    for pos in (keys, IndexPositives([[4], [], [0, 5], [2, 1]], 6)):
        n = pos.n_queries
        rows, cand = pos.pairs(1, n)
        mask = pos.chunk(1, n)
        assert torch.equal(torch.stack([rows, cand], 1), mask.nonzero())  # by query, then candidate


def test_ties_go_to_the_lower_candidate_index() -> None:
    same = np.ones((4, 3), np.float32)  # a collapsed model: every score is equal
    m = retrieval_metrics(same, same, [[0], [1], [2], [3]], ks=(1, 2))
    # ranks 0, 1, 2, 3: each positive has exactly its index's number of tied candidates before it
    assert m["R@1"] == 0.25 and m["R@2"] == 0.5
    assert m["mean_rank"] == 2.5 and m["median_rank"] == 2.0  # floor(median(0..3)) + 1


def test_dense_bool_and_index_lists_and_chunking_agree() -> None:
    q, c, positives = random_case(3, n_q=40, n_c=50, ties=True)
    dense = np.zeros((40, 50), bool)
    for i, p in enumerate(positives):
        dense[i, p] = True
    a = retrieval_metrics(q, c, positives)
    b = retrieval_metrics(q, c, dense, chunk_bytes=1)  # one query per chunk
    assert a == b


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("chunk_bytes", [24 * 50 * 3, 128 * 2**20])  # 3 rows per chunk, or one
def test_both_directions_from_one_pass_equal_two_passes(ties: bool, chunk_bytes: int) -> None:
    from modalign.evaluation.positives import IndexPositives, KeyPositives
    from modalign.evaluation.retrieval import retrieval_per_query_both

    q, c, positives = random_case(6, n_q=40, n_c=50, ties=ties)
    reverse = [[i for i, p in enumerate(positives) if j in p] for j in range(50)]
    keys_q, keys_c = [i % 7 for i in range(40)], [j % 9 for j in range(50)]
    few_q, few_c = [i % 3 for i in range(40)], [j % 2 for j in range(50)]  # > 8 positives: top-k merge
    for pos, rev in (
        (positives, reverse),
        (KeyPositives(keys_q, keys_c), [[i for i in range(40) if keys_q[i] == keys_c[j]] for j in range(50)]),
        (KeyPositives(few_q, few_c), [[i for i in range(40) if few_q[i] == few_c[j]] for j in range(50)]),
    ):
        (ab, _), (ba, r_ba) = retrieval_per_query_both(q, c, pos, (1, 5, 10), chunk_bytes=chunk_bytes)
        assert isinstance(IndexPositives([[0]], 1).transposed(), IndexPositives)
        want_ab = retrieval_metrics(q, c, pos)
        want_ba = retrieval_metrics(c, q, rev)
        got_ab = {k: float(v.mean()) for k, v in ab.items() if k != "rank"}
        got_ba = {k: float(v.mean()) for k, v in ba.items() if k != "rank"}
        for key, value in got_ab.items():
            assert value == pytest.approx(want_ab[key], abs=1e-12), key
        for key, value in got_ba.items():
            assert value == pytest.approx(want_ba[key], abs=1e-12), key
        assert r_ba.n_candidates == 40


def test_non_finite_rows_never_score() -> None:
    q, c, _ = random_case(4, n_q=6, n_c=8)
    q[0] = np.nan  # a NaN query: every score NaN, its positive must not be a hit
    c[1, 2] = np.inf  # an unscorable candidate that is the positive of query 1
    positives = [[0], [1], [2], [3], [4], [5]]
    m = retrieval_metrics(q, c, positives, ks=(1, 8))
    with np.errstate(invalid="ignore"):
        scores = q @ np.where(np.isfinite(c), c, np.nan).T
    want = naive_metrics(scores, positives, (1, 8))
    assert m["R@8"] == pytest.approx(want["R@8"]) == pytest.approx(4 / 6)
    assert m["mean_rank"] == pytest.approx(want["mean_rank"])


def test_row_blocks_of_normalising_and_checking_change_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from modalign.evaluation import ranking
    from modalign.evaluation.retrieval import retrieval_metrics_both

    q, c, positives = random_case(8, n_q=30, n_c=25)
    q[3], c[4, 1], q[5] = np.nan, np.inf, 0.0  # unscorable rows: NaN, inf, zero norm
    want = [retrieval_metrics(q, c, positives), *retrieval_metrics_both(q, c, positives)]
    monkeypatch.setattr(ranking, "_ROW_BLOCK", 4)  # 8 and 7 blocks of rows
    got = [retrieval_metrics(q, c, positives), *retrieval_metrics_both(q, c, positives)]
    np.testing.assert_equal(got, want)
    assert want[0]["n_queries"] == sum(1 for p in positives if p) and want[0]["R@10"] < 1


def test_bad_positives_are_refused_with_the_query_named() -> None:
    x = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match="query 1 lists candidate 7"):
        retrieval_metrics(x, x, [[0], [7], [2]])
    with pytest.raises(ValueError, match="shape"):
        retrieval_metrics(x, x, np.ones((2, 3), bool))


def test_rank_metrics_from_ranks() -> None:
    m = rank_metrics(np.array([0, 0, 3, 7, 12, -1]), ks=(1, 5, 10))
    assert m == {"R@1": 2 / 5, "R@5": 3 / 5, "R@10": 4 / 5, "median_rank": 4.0}


def test_equals_clip_benchmark_recall_at_k() -> None:
    zr = pytest.importorskip("clip_benchmark.metrics.zeroshot_retrieval")
    rng = np.random.default_rng(7)
    images = torch.nn.functional.normalize(
        torch.randn(20, 8, generator=torch.Generator().manual_seed(7)), dim=1
    )
    image_of_text = np.repeat(np.arange(20), 3)  # 3 captions per image, shuffled
    rng.shuffle(image_of_text)
    noise = torch.randn(60, 8, generator=torch.Generator().manual_seed(8))
    texts = torch.nn.functional.normalize(images[image_of_text] + 0.8 * noise, dim=1)
    scores = texts @ images.T
    pairs = torch.zeros_like(scores, dtype=torch.bool)
    pairs[torch.arange(60), torch.from_numpy(image_of_text)] = True
    ks = (1, 5, 10)
    t2i = retrieval_metrics(texts, images, pairs.numpy(), ks, normalize=False)
    i2t = retrieval_metrics(images, texts, pairs.T.numpy(), ks, normalize=False)
    for k in ks:  # its per-query recalls, thresholded as it does; the mean in float64 (it uses float32)
        ref_t2i = (zr.batchify(zr.recall_at_k, scores, pairs, 16, "cpu", k=k) > 0).double().mean().item()
        ref_i2t = (zr.batchify(zr.recall_at_k, scores.T, pairs.T, 16, "cpu", k=k) > 0).double().mean().item()
        assert t2i[f"R@{k}"] == pytest.approx(ref_t2i, abs=1e-9)  # image_retrieval_recall@k
        assert i2t[f"R@{k}"] == pytest.approx(ref_i2t, abs=1e-9)  # text_retrieval_recall@k
        # its "true recall" before thresholding is our recall@k
        true_recall = zr.batchify(zr.recall_at_k, scores.T, pairs.T, 16, "cpu", k=k).double().mean().item()
        assert i2t[f"recall@{k}"] == pytest.approx(true_recall, abs=1e-7)  # its per-query ratio is float32


class _Embedded:
    """The part of a SentenceTransformer the evaluator calls: queries come pre-embedded."""

    def __init__(self, emb: torch.Tensor) -> None:
        self.emb = emb

    def encode_query(self, sentences: list[str], **_: object) -> torch.Tensor:
        return self.emb[[int(s) for s in sentences]]


@pytest.mark.parametrize("ties", [False, True])
def test_equals_sentence_transformers_information_retrieval_evaluator(ties: bool) -> None:
    st = pytest.importorskip("sentence_transformers.evaluation")
    from sentence_transformers.util import cos_sim

    q, c, positives = random_case(5, n_q=30, n_c=120, ties=ties)
    queries = {str(i): str(i) for i in range(30)}
    corpus = {j: f"doc {j}" for j in range(120)}  # integer ids: ties by id = by index
    relevant = {str(i): set(p) for i, p in enumerate(positives) if p}
    ev = st.InformationRetrievalEvaluator(
        queries, corpus, relevant, score_functions={"cosine": cos_sim}, corpus_chunk_size=50, write_csv=False
    )
    ref = ev.compute_all_metrics(_Embedded(torch.from_numpy(q)), corpus_embeddings=torch.from_numpy(c))[
        "cosine"
    ]
    got = retrieval_metrics(q, c, positives, ks=(1, 3, 5, 10))
    for k in (1, 3, 5, 10):
        assert got[f"R@{k}"] == pytest.approx(ref["accuracy@k"][k], abs=1e-9)
        assert got[f"precision@{k}"] == pytest.approx(ref["precision@k"][k], abs=1e-9)
        assert got[f"recall@{k}"] == pytest.approx(ref["recall@k"][k], abs=1e-9)
    assert got["MRR@10"] == pytest.approx(ref["mrr@k"][10], abs=1e-9)
    assert got["nDCG@10"] == pytest.approx(ref["ndcg@k"][10], abs=1e-9)
    assert got["MAP@100"] == pytest.approx(ref["map@k"][100], abs=1e-9)


def naive_top_class(scores: np.ndarray, y: int, k: int) -> bool:
    return y >= 0 and y in naive_order(scores)[:k] and math.isfinite(float(scores[y]))


def test_zero_shot_against_brute_force_balanced_accuracy_and_templates() -> None:
    rng = np.random.default_rng(1)
    names = {"a": ["apple"], "b": ["bee", "bug"], "c": ["cat"], "d": ["dog"], "e": ["eel"], "f": ["fig"]}
    prompts_by_class = fill_templates(names, ["a photo of a {}.", "{}"])
    assert prompts_by_class["b"] == ["a photo of a bee.", "bee", "a photo of a bug.", "bug"]
    prompt_labels = [c for c, ps in prompts_by_class.items() for _ in ps]
    prompt_emb = rng.standard_normal((len(prompt_labels), 4)) * rng.uniform(0.5, 3, (len(prompt_labels), 1))
    emb = rng.standard_normal((60, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    y = list(rng.choice(["a", "b", "c", "d", "e"], 60))  # class "f" is never a true label
    classes, protos = class_prototypes(prompt_emb, prompt_labels)
    m = zero_shot_metrics(emb, y, classes, protos)
    # brute force: prototype = renormalised mean of the class's *normalised* prompt vectors
    unit = prompt_emb / np.linalg.norm(prompt_emb, axis=1, keepdims=True)
    w = np.stack([unit[[i for i, lab in enumerate(prompt_labels) if lab == c]].mean(0) for c in classes])
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    scores = emb @ w.T
    yi = [classes.index(v) for v in y]
    top1 = [naive_top_class(s, t, 1) for s, t in zip(scores, yi)]
    assert m["accuracy"] == pytest.approx(np.mean(top1))
    assert m["top5_accuracy"] == pytest.approx(
        np.mean([naive_top_class(s, t, 5) for s, t in zip(scores, yi)])
    )
    pred = [classes[naive_order(s)[0]] for s in scores]
    recalls = [np.mean([p == c for p, t in zip(pred, y) if t == c]) for c in sorted(set(y))]
    assert m["mean_per_class_recall"] == pytest.approx(np.mean(recalls))
    sklearn = pytest.importorskip("sklearn.metrics")
    assert m["mean_per_class_recall"] == pytest.approx(sklearn.balanced_accuracy_score(y, pred))
    # CLIP_benchmark's zero-shot accuracy(): its last line calls float() on a 1-element array, which
    # numpy >= 2 refuses, so its two computing lines are run here as they are written there
    logits, target = torch.from_numpy(100 * scores), torch.tensor(yi)
    pred_k = logits.topk(5, 1, True, True)[1].t()
    correct = pred_k.eq(target.view(1, -1).expand_as(pred_k))
    for k, key in ((1, "accuracy"), (5, "top5_accuracy")):
        assert m[key] == pytest.approx(correct[:k].reshape(-1).double().sum().item() / 60, abs=1e-9)
