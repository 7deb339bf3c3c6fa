"""kind="qdrant" (Qdrant's local mode) behind the Index interface, against brute force."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_index import FILTERS, D, corpus, naive

from modalign.errors import ItemNotFoundError
from modalign.search import Index

pytest.importorskip("qdrant_client")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    vectors, ids, meta = corpus(300)
    path = tmp_path_factory.mktemp("qdrant") / "idx"
    Index.build(path, vectors, ids, meta, kind="qdrant", info={"modality": "image"}).close()
    return path


@pytest.mark.parametrize("where", FILTERS)
def test_search_with_filters_equals_brute_force(built: Path, where: Any) -> None:
    vectors, ids, meta = corpus(300)
    queries = np.random.default_rng(4).standard_normal((3, D)).astype(np.float32)
    with Index.open(built) as idx:
        assert type(idx).__name__ == "QdrantIndex" and idx.kind == "qdrant" and idx.dim == D
        assert idx.info == {"modality": "image"} and len(idx) == 300
        for q, hits in zip(queries, idx.search(queries, k=12, filter=where)):
            ref = naive(vectors, ids, meta, q, 12, where)
            assert [h.id for h in hits] == [i for _, i in ref]
            np.testing.assert_allclose([h.score for h in hits], [s for s, _ in ref], atol=1e-5)


def test_add_delete_get_and_reopen(tmp_path: Path) -> None:
    vectors, ids, meta = corpus(40)
    idx = Index.build(tmp_path / "q", vectors[:30], ids[:30], meta[:30], kind="qdrant")
    idx.add(vectors[30:], ids[30:], meta[30:])
    idx.delete(["item3", "item35"])
    idx.close()
    with Index.open(tmp_path / "q") as again:
        assert len(again) == 38 and "item3" not in again and "item36" in again
        assert sorted(again.ids) == sorted(i for i in ids if i not in ("item3", "item35"))
        vec, m = again.get("item36")
        np.testing.assert_allclose(vec, vectors[36] / np.linalg.norm(vectors[36]), atol=1e-6)
        assert m == meta[36]
        assert again.search(vectors[36], k=1)[0][0].id == "item36"
        with pytest.raises(ItemNotFoundError):
            again.get("item3")
        with pytest.raises(ItemNotFoundError):
            again.delete(["item3"])
