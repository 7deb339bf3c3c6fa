"""The on-disk feature store: shards from concurrent writers add up, damaged shards are ignored."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch

from modalign.training.feature_cache import FeatureStore, tensor_digest

IDENTITY = {"encoder": "x", "weights": "0"}


def _writer(directory: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    store = FeatureStore(Path(directory), IDENTITY)
    for _ in range(20):  # many small shards, interleaved with the other writer
        x = torch.randn(4, generator=g)
        store.put({tensor_digest(x): x * 2})


def test_two_writers_at_once_leave_every_feature_readable(tmp_path: Path) -> None:
    ctx = mp.get_context("fork")  # no torch re-import per writer
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), s)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = FeatureStore(tmp_path, IDENTITY)
    assert len(store.items) == 40
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, generator=g)
    torch.testing.assert_close(store.items[tensor_digest(x)], x * 2)
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_a_damaged_shard_is_ignored_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    FeatureStore(tmp_path, IDENTITY).put({"a": torch.ones(3)})
    (tmp_path / "torn.safetensors").write_bytes(b"\x00\x01 not a shard")
    store = FeatureStore(tmp_path, IDENTITY)
    assert set(store.items) == {"a"}
    assert "torn.safetensors" in capsys.readouterr().err


def test_the_content_key_follows_values_shape_and_dtype() -> None:
    x = torch.arange(6, dtype=torch.float32)
    assert tensor_digest(x) == tensor_digest(x.clone())
    assert tensor_digest(x) != tensor_digest(x.view(2, 3))
    assert tensor_digest(x) != tensor_digest(x.double())
    y = x.clone()
    y[5] += 1e-6
    assert tensor_digest(x) != tensor_digest(y)
