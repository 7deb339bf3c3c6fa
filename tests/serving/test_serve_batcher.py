"""MicroBatcher: concurrent queries share encode calls and get exactly what a single encode gives."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from serve_fixtures import tiny_model

from modalign.errors import DataError
from modalign.serving import MicroBatcher


@pytest.fixture(scope="module")
def model(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    return tiny_model(dataset, tmp_path_factory.mktemp("batcher") / "model")


class CountingEncode:
    """The model's encode, recording the size of every call."""

    def __init__(self, model: Any):
        self.model = model
        self.sizes: list[int] = []

    def __call__(self, inputs: Any, modality: str) -> np.ndarray:
        self.sizes.append(len(inputs))
        return self.model.encode(inputs, modality)


async def _embed_all(batcher: MicroBatcher, queries: list[tuple[Any, str]]) -> list[Any]:
    try:
        return await asyncio.gather(*(batcher.embed(p, m) for p, m in queries), return_exceptions=True)
    finally:
        batcher.close()


def test_concurrent_queries_are_batched_and_equal_single_encodes(model: Any, dataset: Path) -> None:
    texts = [f"a {w} {i}" for i, w in enumerate(["circle", "square", "cross", "stripe"] * 5)]
    images = [np.full((10, 10), 20 * i, dtype=np.uint8) for i in range(6)]
    queries = [(t, "text") for t in texts] + [(im, "image") for im in images]
    encode = CountingEncode(model)
    out = asyncio.run(_embed_all(MicroBatcher(encode, max_batch=8, wait_s=0.05), queries))
    for (payload, modality), got in zip(queries, out):
        np.testing.assert_allclose(got, model.encode([payload], modality)[0], atol=1e-5)
    assert sum(encode.sizes) == len(queries)
    assert max(encode.sizes) == 8  # batches fill up to max_batch
    assert len(encode.sizes) < len(queries) / 2


def test_without_batching_every_query_is_one_encode_call(model: Any) -> None:
    encode = CountingEncode(model)
    queries = [(f"a circle {i}", "text") for i in range(6)]
    out = asyncio.run(_embed_all(MicroBatcher(encode, max_batch=1), queries))
    assert encode.sizes == [1] * 6
    for (payload, modality), got in zip(queries, out):
        np.testing.assert_allclose(got, model.encode([payload], modality)[0], atol=1e-5)


def test_a_bad_query_fails_alone_and_the_rest_of_its_batch_succeeds(model: Any) -> None:
    queries: list[tuple[Any, str]] = [
        ("a circle", "text"),
        (np.full(8, np.nan), "audio"),
        ("a cross", "text"),
    ]
    queries.append((np.zeros(4000, dtype=np.float32) + 0.1, "audio"))
    out = asyncio.run(_embed_all(MicroBatcher(model.encode, max_batch=8, wait_s=0.05), queries))
    assert isinstance(out[1], DataError) and "NaN" in str(out[1])
    for i in (0, 2, 3):
        np.testing.assert_allclose(out[i], model.encode([queries[i][0]], queries[i][1])[0], atol=1e-5)


def test_concurrent_searches_share_encode_and_search_calls_and_match_single_ones(model: Any) -> None:
    vectors = np.random.default_rng(1).standard_normal((50, model.embed_dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    search_sizes: list[int] = []

    def search(queries: np.ndarray, k: int, filt: dict[str, Any] | None) -> list[list[tuple[int, float]]]:
        search_sizes.append(len(queries))
        scores = queries @ vectors.T  # (Q, N)
        if filt is not None:  # {"even": True}: only even rows
            scores[:, 1::2] = -np.inf
        return [[(int(r), float(row[r])) for r in np.argsort(-row, kind="stable")[:k]] for row in scores]

    encode = CountingEncode(model)
    texts = [f"a shape {i}" for i in range(12)]
    asks = [(t, 3 if i % 3 else 5, {"even": True} if i % 2 else None) for i, t in enumerate(texts)]

    async def run() -> list[Any]:
        b = MicroBatcher(encode, search, max_batch=16, wait_s=0.05)
        try:
            return await asyncio.gather(*(b.search(t, "text", k, f) for t, k, f in asks))
        finally:
            b.close()

    out = asyncio.run(run())
    for (text, k, filt), hits in zip(asks, out):
        alone = search(model.encode([text], "text"), k, filt)[0]
        assert [r for r, _ in hits] == [r for r, _ in alone]
        np.testing.assert_allclose([s for _, s in hits], [s for _, s in alone], atol=1e-5)
    # four groups (k 5 or 3, no filter or filter: 2, 2, 4 and 4 queries): one encode and one search each
    assert sorted(encode.sizes) == [2, 2, 4, 4]
    assert sorted(search_sizes[: len(encode.sizes)]) == [2, 2, 4, 4]
