"""modalign.search.Index against a naive NumPy/Python reference: search, filters, add/delete, reopen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modalign.errors import ConfigError, IndexStoreError, ItemNotFoundError
from modalign.search import Hit, Index

N, D = 600, 24


def corpus(n: int = N, seed: int = 0) -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, D)).astype(np.float32)
    ids = [f"item{i}" for i in range(n)]
    splits = ["train", "test", "val"]
    meta = [
        {"split": splits[i % 3], "year": 1990 + i % 40, "tag": ["a", "b", "c", "d", "e"][i % 5]}
        for i in range(n)
    ]
    return vectors, ids, meta


def matches(m: dict[str, Any], where: dict[str, Any] | None) -> bool:
    """The filter rules written out plainly, one row at a time."""
    if where is None:
        return True
    for field, cond in where.items():
        if field not in m:
            return False
        v = m[field]
        if isinstance(cond, list):
            ok = any(type(v) is type(c) and v == c for c in cond)
        elif isinstance(cond, dict):
            ok = all(
                {"gt": v > a, "gte": v >= a, "lt": v < a, "lte": v <= a}[op]
                if op in ("gt", "gte", "lt", "lte")
                else (type(v) is type(a) and v == a)
                for op, a in cond.items()
            )
        else:
            ok = type(v) is type(cond) and v == cond
        if not ok:
            return False
    return True


def naive(vectors: np.ndarray, ids: list[str], meta: list[dict[str, Any]], q: np.ndarray, k: int, where: Any):
    """Top-k (id, cosine) by brute force over the rows that match ``where``."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    qu = q / np.linalg.norm(q)
    scored = [(float(unit[i] @ qu), ids[i]) for i in range(len(ids)) if matches(meta[i], where)]
    scored.sort(key=lambda t: -t[0])
    return scored[:k]


FILTERS = [
    None,
    {"split": "test"},
    {"tag": ["a", "c"]},
    {"year": {"gte": 2000, "lt": 2004}},
    {"split": "val", "tag": "b", "year": {"gt": 1995}},
    {"year": {"lte": 1990}},  # 15 rows: fewer than k=20 exist
    {"split": "nope"},
]


@pytest.mark.parametrize("where", FILTERS)
def test_flat_search_equals_brute_force(tmp_path: Path, where: Any) -> None:
    vectors, ids, meta = corpus()
    idx = Index.build(tmp_path / "idx", vectors, ids, meta)
    queries = np.random.default_rng(1).standard_normal((5, D)).astype(np.float32)
    for q, hits in zip(queries, idx.search(queries, k=20, filter=where)):
        ref = naive(vectors, ids, meta, q, 20, where)
        assert [h.id for h in hits] == [i for _, i in ref]
        np.testing.assert_allclose([h.score for h in hits], [s for s, _ in ref], atol=1e-5)
        assert all(h.metadata == meta[ids.index(h.id)] for h in hits)


@pytest.mark.parametrize("kind", ["hnsw", "ivfpq", "usearch"])
@pytest.mark.parametrize("where", FILTERS)
def test_approximate_kinds_return_exactly_k_true_cosines(tmp_path: Path, kind: str, where: Any) -> None:
    if kind == "usearch":
        pytest.importorskip("usearch")
    vectors, ids, meta = corpus()
    # small graphs so that filters of 200+ rows take the FAISS selector path, not the exact one
    params = {"nlist": 8, "nbits": 6, "m": 6} if kind == "ivfpq" else {"m": 8, "ef_search": 8}
    idx = Index.build(tmp_path / "idx", vectors, ids, meta, kind=kind, **params)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = np.random.default_rng(2).standard_normal((8, D)).astype(np.float32)
    recall = []
    for q, hits in zip(queries, idx.search(queries, k=20, filter=where)):
        ref = naive(vectors, ids, meta, q, 20, where)
        assert len(hits) == len(ref)  # exactly k whenever k rows match
        assert all(matches(h.metadata, where) for h in hits)
        assert len({h.id for h in hits}) == len(hits)
        true = [float(unit[ids.index(h.id)] @ (q / np.linalg.norm(q))) for h in hits]
        np.testing.assert_allclose([h.score for h in hits], true, atol=1e-4)  # scores are cosines
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        recall.append(len({h.id for h in hits} & {i for _, i in ref}) / len(ref) if ref else 1.0)
    assert np.mean(recall) >= 0.8


def test_filter_equality_is_type_exact(tmp_path: Path) -> None:
    vectors, ids, _ = corpus(4)
    meta = [{"v": 1}, {"v": True}, {"v": "1"}, {}]
    idx = Index.build(tmp_path / "idx", vectors, ids, meta)
    assert [h.id for h in idx.search(vectors[0], k=4, filter={"v": 1})[0]] == ["item0"]
    assert [h.id for h in idx.search(vectors[0], k=4, filter={"v": True})[0]] == ["item1"]
    assert {h.id for h in idx.search(vectors[0], k=4, filter={"v": {"ne": "1"}})[0]} == {"item0", "item1"}
    assert {h.id for h in idx.search(vectors[0], k=4, filter={"v": {"gte": 1}})[0]} == {"item0"}


@pytest.mark.parametrize("kind", ["flat", "hnsw", "usearch"])
def test_add_delete_survive_reopen_and_save(tmp_path: Path, kind: str) -> None:
    if kind == "usearch":
        pytest.importorskip("usearch")
    vectors, ids, meta = corpus()
    extra_v, extra_ids, extra_meta = corpus(50, seed=9)
    extra_ids = [f"new{i}" for i in range(50)]
    idx = Index.build(
        tmp_path / "idx", vectors[:500], ids[:500], meta[:500], kind=kind, info={"modality": "x"}
    )
    idx.add(vectors[500:], ids[500:], meta[500:])
    idx.add(extra_v, extra_ids, extra_meta)
    gone = ids[::7] + extra_ids[:5]
    idx.delete(gone)
    live = [i for i in ids + extra_ids if i not in set(gone)]
    all_v = np.concatenate([vectors, extra_v])
    all_ids, all_meta = ids + extra_ids, meta + extra_meta
    keep = [all_ids.index(i) for i in live]
    ref_v, ref_meta = all_v[keep], [all_meta[i] for i in keep]
    q = np.random.default_rng(3).standard_normal((4, D)).astype(np.float32)

    def check(index: Index) -> None:
        assert len(index) == len(live) and index.dim == D and index.kind == kind
        assert index.info == {"modality": "x"}
        for qi, hits in zip(q, index.search(q, k=10, filter={"split": "test"})):
            ref = naive(ref_v, live, ref_meta, qi, 10, {"split": "test"})
            assert len(hits) == 10 and not {h.id for h in hits} & set(gone)
            assert [h.id for h in hits] == [i for _, i in ref] or kind != "flat"
        vec, m = index.get("new7")
        np.testing.assert_allclose(vec, extra_v[7] / np.linalg.norm(extra_v[7]), atol=1e-6)
        assert m == extra_meta[7]
        with pytest.raises(ItemNotFoundError, match="item0"):
            index.get("item0")

    check(idx)
    idx.close()
    with Index.open(tmp_path / "idx") as reopened:  # from the journal
        check(reopened)
        reopened.save()
    with Index.open(tmp_path / "idx") as reopened:  # from the new snapshot
        check(reopened)
        reopened.add(vectors[:1], ["item0"], [meta[0]])  # a deleted id can come back
        assert reopened.search(vectors[0], k=1)[0][0] == Hit("item0", pytest.approx(1.0, abs=1e-5), meta[0])
    names = sorted(p.name for p in (tmp_path / "idx").iterdir())
    assert not [n for n in names if n.endswith(".tmp")] and "index.json" in names


def test_torn_journal_tail_is_dropped_and_appends_continue(tmp_path: Path) -> None:
    vectors, ids, meta = corpus(100)
    idx = Index.build(tmp_path / "idx", vectors[:50], ids[:50], meta[:50])
    idx.add(vectors[50:60], ids[50:60], meta[50:60])
    idx.add(vectors[60:70], ids[60:70], meta[60:70])
    idx.close()
    journal = next((tmp_path / "idx").glob("journal-*.wal"))
    data = journal.read_bytes()
    journal.write_bytes(data[:-7])  # the second record torn, as a crash mid-append leaves it
    idx = Index.open(tmp_path / "idx")
    assert len(idx) == 60 and "item59" in idx and "item60" not in idx
    idx.add(vectors[60:61], ids[60:61])  # must land after the first record, not after the torn bytes
    idx.close()
    assert len(Index.open(tmp_path / "idx")) == 61


def test_open_says_what_is_wrong(tmp_path: Path) -> None:
    vectors, ids, meta = corpus(50)
    path = tmp_path / "idx"
    Index.build(path, vectors, ids, meta, kind="hnsw").close()
    with pytest.raises(IndexStoreError, match="index.json is missing"):
        Index.open(tmp_path)
    snap = next(path.glob("vectors-*.npy"))
    good = snap.read_bytes()
    snap.write_bytes(good[:-4] + b"\x00\x00\x80\x7f")
    with pytest.raises(IndexStoreError, match=rf"{snap.name} is damaged: its checksum"):
        Index.open(path)
    snap.write_bytes(good[:100])
    with pytest.raises(IndexStoreError, match=rf"{snap.name} is damaged: 100 bytes"):
        Index.open(path)
    snap.unlink()
    with pytest.raises(IndexStoreError, match=rf"{snap.name} is missing"):
        Index.open(path)
    (path / "index.json").write_text("{not json")
    with pytest.raises(IndexStoreError, match="index.json is not valid JSON"):
        Index.open(path)
    with pytest.raises(IndexStoreError, match="exists and is not an empty directory"):
        Index.build(path, vectors, ids)


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    vectors, ids, meta = corpus(20)
    a = Index.build(tmp_path / "idx", vectors[:10], ids[:10])
    b = Index.open(tmp_path / "idx")
    a.add(vectors[10:12], ids[10:12])
    with pytest.raises(IndexStoreError, match="being changed by another process"):
        b.add(vectors[12:13], ids[12:13])
    a.close()
    b.add(vectors[12:13], ids[12:13])  # b reloads a's changes before writing its own
    assert len(b) == 13 and "item11" in b
    b.close()


def test_bad_input_is_named(tmp_path: Path) -> None:
    vectors, ids, meta = corpus(20)
    with pytest.raises(ConfigError, match="unknown index kind 'annoy'"):
        Index.build(tmp_path / "a", vectors, ids, kind="annoy")
    with pytest.raises(ConfigError, match="unknown parameter"):
        Index.build(tmp_path / "a", vectors, ids, kind="hnsw", ef=3)
    with pytest.raises(ConfigError, match="ids repeat"):
        Index.build(tmp_path / "a", vectors, ids[:19] + ["item0"])
    bad = vectors.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ConfigError, match="row 3 is not finite"):
        Index.build(tmp_path / "a", bad, ids)
    idx = Index.build(tmp_path / "b", vectors, ids, meta)
    with pytest.raises(ConfigError, match=r"shape \(N, 24\)"):
        idx.search(np.ones(5, np.float32))
    with pytest.raises(ConfigError, match="unknown operator"):
        idx.search(vectors[0], filter={"year": {"between": [1, 2]}})
    with pytest.raises(ConfigError, match="already in the index"):
        idx.add(vectors[:1], ["item0"])
    with pytest.raises(ConfigError, match="metadata row 0 must be JSON"):
        idx.add(vectors[:1], ["x"], [{"a": object()}])
    with pytest.raises(ItemNotFoundError, match="nope"):
        idx.delete(["nope"])


def test_filtered_search_sees_changes_made_after_it(tmp_path: Path) -> None:
    vectors, ids, meta = corpus()
    idx = Index.build(tmp_path / "idx", vectors, ids, meta)
    q = vectors[5]
    first = idx.search(q, k=3, filter={"tag": "a"})[0]  # the rows with tag a are now gathered
    assert first[0].id == "item5"
    idx.add(q[None] * 3, ["twin"], [{"tag": "a"}])
    idx.delete(["item5"])
    again = idx.search(q, k=3, filter={"tag": "a"})[0]
    assert again[0].id == "twin" and "item5" not in {h.id for h in again}
    assert [h.id for h in again[1:]] == [h.id for h in first[1:]]


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_empty_small_and_emptied_indexes(tmp_path: Path, kind: str) -> None:
    vectors, ids, _ = corpus(5)
    empty = Index.build(tmp_path / "empty", np.zeros((0, D), np.float32), [], kind=kind)
    assert empty.search(vectors[:2], k=3) == [[], []] and len(empty) == 0
    empty.add(vectors[:1], ids[:1])
    assert [h.id for h in empty.search(vectors[0], k=3)[0]] == ["item0"]
    idx = Index.build(tmp_path / "small", vectors, ids, kind=kind)
    assert len(idx.search(vectors[0], k=10)[0]) == 5  # k > N: all of them
    idx.delete(ids)
    assert idx.search(vectors[0], k=3) == [[]] and idx.search(vectors[0], k=3, filter={"x": 1}) == [[]]
