"""WebDataset shards: packing keeps every row (missing modalities too), streaming splits them exactly
once over ranks x workers, resumes at the exact sample, and skips damaged records with a count."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, write_dataset, write_jsonl

from modalign.config import load_config
from modalign.data.dataset import fit_transforms, load_samples
from modalign.data.manifest import read_manifest
from modalign.data.sources import ShardBatches, pack_manifest, shard_paths
from modalign.workflows.build import build_sources

N = 40


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """40 rows (rows 3, 5, 7 miss image, audio, text), their fitted sources and 8 shards of 5."""
    root = tmp_path_factory.mktemp("shards")
    manifest_path = write_dataset(root / "data", {"train": N})
    rows = [json.loads(line) for line in manifest_path.read_text().splitlines()]
    rows[3]["image"] = None
    del rows[5]["audio"]
    rows[7]["text"] = ""
    write_jsonl(manifest_path, rows)
    manifest = read_manifest(manifest_path)
    sources = build_sources(load_config(raw=tiny_config(manifest_path)))
    fit_transforms(manifest, sources, list(range(N)))
    result = pack_manifest(manifest, root / "shards", shard_size=5)
    assert (result.samples, len(result.shards), result.files) == (N, 8, 2 * N - 2)
    memory = load_samples(manifest, sources, list(range(N)), keep_columns=["label"])
    return {"root": root, "manifest": manifest, "sources": sources, "shards": result.shards, "memory": memory}


def stream_ids(packed, rank: int, workers: int, epoch: int = 0) -> list[str]:
    batches = ShardBatches(
        packed["shards"], packed["sources"], 1, rank=rank, world_size=2, workers=workers, seed=3
    )
    batches.epoch = epoch
    return [i for item in batches.items() for i in item.samples.ids]


def test_packed_samples_decode_to_the_in_memory_tensors_with_missing_modalities(packed):
    reader = ShardBatches(packed["shards"], packed["sources"], 1, keep_columns=["label"], buffer_size=1)
    memory = packed["memory"]
    seen = 0
    for item in reader.items():
        s = item.samples
        assert len(s) == 1
        j = memory.ids.index(s.ids[0])
        for name, values in s.data.items():
            expected = memory.data[name][j]
            assert (values[0] is None) == (expected is None), (s.ids[0], name)
            if expected is not None:
                assert torch.equal(values[0], expected), (s.ids[0], name)
        assert s.columns["label"][0] == memory.columns["label"][j]
        seen += 1
    assert seen == N
    absent = {n: [memory.ids[j] for j, v in enumerate(memory.data[n]) if v is None] for n in memory.data}
    assert absent == {"image": ["s3"], "audio": ["s5"], "text": ["s7"]}


def test_every_sample_exactly_once_per_epoch_over_2_ranks_and_2_workers(packed):
    everything = sorted(f"s{k}" for k in range(N))
    orders = []
    for epoch in (0, 1):
        per_rank = [stream_ids(packed, rank, workers=2, epoch=epoch) for rank in (0, 1)]
        assert all(per_rank)  # 8 shards over 4 slots: every rank reads some
        assert sorted(per_rank[0] + per_rank[1]) == everything
        orders.append(per_rank[0] + per_rank[1])
    assert orders[0] != orders[1]  # shards and buffers are reshuffled per epoch


def test_resume_continues_at_the_exact_sample(packed):
    def run(state=None, take=0):
        b = ShardBatches(packed["shards"], packed["sources"], 3, workers=2, seed=1, buffer_size=4, chunk=2)
        if state is not None:
            b.load_state_dict(state)
        it = iter(b)
        out, states = [], []
        for _ in range(take):
            batch = next(it)
            out.append((batch.ids, batch.inputs["image"]))
            states.append(json.loads(json.dumps(b.state_dict())))  # the state is JSON
        return out, states

    straight, states = run(take=17)  # 13 batches per epoch: crosses into epoch 1
    resumed, _ = run(states[10], take=6)
    assert [ids for ids, _ in resumed] == [ids for ids, _ in straight[11:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(resumed, straight[11:], strict=True))
    assert states[14]["epoch"] == 1


def rewrite_shard(path: Path, edit) -> None:
    """Rewrite a shard, passing every (name, bytes) through ``edit`` (None drops the member)."""
    members = []
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            data = edit(m.name, f.read())
            if data is not None:
                members.append((m.name, data))
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_corrupt_member_is_skipped_and_counted(packed, tmp_path):
    shards = []
    for p in packed["shards"]:
        shards.append(tmp_path / p.name)
        shards[-1].write_bytes(p.read_bytes())
    # shard 0 holds rows 0-4: a garbage image for row 1, row 2's audio member gone, bad JSON for row 4
    edits = {"000000001.image.png": b"not a png", "000000002.audio.wav": None, "000000004.json": b"{"}
    rewrite_shard(shards[0], lambda name, data: edits.get(name, data) if name in edits else data)
    shards[1].write_bytes(shards[1].read_bytes()[:1500])  # truncated: rows 5-9 mostly lost
    b = ShardBatches(shards, packed["sources"], 1, workers=2)
    ids = [i for item in b.items() for i in item.samples.ids]
    assert {"s1", "s2", "s4"}.isdisjoint(ids) and len(ids) == len(set(ids))
    assert set(ids) >= {f"s{k}" for k in range(10, N)} | {"s0", "s3"}
    # row 1's image: the image transform's reason; row 2 and the cut-off row 5: missing_member;
    # the truncated shard itself once (its rows 6-9 are lost with it)
    assert b.skipped == {"bad_image": 1, "missing_member": 2, "bad_metadata": 1, "corrupt_shard": 1}
    assert len(ids) == N - 8


def test_shards_are_webdataset_shards(packed):
    """The webdataset library groups our members into the same samples, bytes unchanged."""
    import webdataset as wds

    paths = [str(p) for p in shard_paths(packed["root"] / "shards")]
    samples = list(wds.WebDataset(paths, shardshuffle=False, empty_check=False))
    assert len(samples) == N
    by_key = {s["__key__"]: s for s in samples}
    first = by_key["000000000"]
    assert {"json", "image.png", "audio.wav"} <= set(first)
    root = packed["manifest"].base_dir
    assert first["image.png"] == (root / "images/0.png").read_bytes()
    assert "image.png" not in by_key["000000003"] and json.loads(by_key["000000003"]["json"])["image"] is None


def test_data_pack_command(packed, tmp_path):
    from typer.testing import CliRunner

    from modalign.cli import app

    manifest = packed["manifest"].path
    result = CliRunner().invoke(
        app, ["data", "pack", str(manifest), "--out", str(tmp_path / "s"), "--shard-size", "16"]
    )
    assert result.exit_code == 0, result.output
    assert "40 samples (78 media files) in 3 shards" in result.output
    assert [p.name for p in shard_paths(tmp_path / "s")] == [f"shard-00000{i}.tar" for i in range(3)]
    again = CliRunner().invoke(app, ["data", "pack", str(manifest), "--out", str(tmp_path / "s")])
    assert again.exit_code == 2 and "already holds shards" in again.output


def test_a_shard_position_resumes_only_with_the_same_processes_and_workers(packed):
    from modalign.errors import ConfigError
    from modalign.training.distributed import World
    from modalign.training.shard_source import ShardSource

    two = [
        ShardBatches(packed["shards"], packed["sources"], 2, rank=r, world_size=2, workers=2) for r in (0, 1)
    ]
    for b in two:
        next(iter(b))
    saved = json.dumps({"workers": 2, "ranks": [b.state_dict() for b in two]}).encode()
    tensors = {"source/shards": torch.frombuffer(bytearray(saved), dtype=torch.uint8)}
    one = ShardSource(ShardBatches(packed["shards"], packed["sources"], 4, workers=2), N, World())
    with pytest.raises(ConfigError, match="with 2 process"):
        one.load_state_tensors(tensors)
    rank1 = ShardSource(ShardBatches(packed["shards"], packed["sources"], 2, workers=2), N, World(1, 2))
    rank1.load_state_tensors(tensors)
    assert rank1.reader.state_dict() == two[1].state_dict()
    solo = ShardSource(two[1], N, World())  # state_tensors of one process: its own reader
    saved_solo = json.loads(bytes(solo.state_tensors()["source/shards"].tolist()))
    assert saved_solo["ranks"] == [two[1].state_dict()]
