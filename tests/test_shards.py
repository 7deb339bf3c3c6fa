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
from modalign.data.sources.shards import merge_states
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


def readers(packed, ranks: int, workers: int, state=None) -> list[ShardBatches]:
    out = []
    for r in range(ranks):
        b = ShardBatches(
            packed["shards"],
            packed["sources"],
            2,
            rank=r,
            world_size=ranks,
            workers=workers,
            seed=5,
            buffer_size=3,
        )
        if state is not None:
            b.load_state_dict(json.loads(json.dumps(state)))  # the state is JSON
        out.append(b)
    return out


def take(ranks: list[ShardBatches], steps: int | None) -> tuple[list[list[str]], dict]:
    """Every rank's ids of ``steps`` batches (None: the rest of the epoch, every record), and the position."""
    if steps is None:
        return [[i for item in b.items() for i in item.samples.ids] for b in ranks], {}
    seen = []
    for b in ranks:
        it = iter(b)
        seen.append([i for _ in range(steps) for i in next(it).ids])
    return seen, merge_states([b.state_dict() for b in ranks])


@pytest.mark.parametrize(
    "chain",
    [
        [(2, 2, 3), (1, 1, None)],  # 4 readers -> 1
        [(2, 2, 3), (1, 2, None)],  # 4 -> 2
        [(2, 1, 4), (1, 2, None)],  # the same number of readers, other ranks
        [(1, 1, 5), (2, 2, None)],  # 1 -> 4: the rest of the stream is dealt into 4 parts
        [(2, 2, 2), (1, 2, 3), (2, 1, 2), (1, 1, None)],  # resumed again within the epoch
    ],
)
def test_resume_with_other_ranks_or_workers_hands_out_each_sample_once(packed, chain):
    seen: list[str] = []
    state: dict | None = None
    for ranks, workers, steps in chain:
        start = state
        ids, state = take(readers(packed, ranks, workers, start), steps)
        seen += [i for rank in ids for i in rank]
        assert all(ids)  # every rank has records to train on (else the epoch would end for all)
    assert sorted(seen) == sorted(f"s{k}" for k in range(N))  # exactly once over the runs
    # the next epoch is that of a run that always had the last layout
    ranks, workers, _ = chain[-1]
    resumed, fresh = readers(packed, ranks, workers, start), readers(packed, ranks, workers)
    for b, f in zip(resumed, fresh, strict=True):
        b.next_epoch()
        f.next_epoch()
    assert take(resumed, None)[0] == take(fresh, None)[0]


def test_resume_with_the_same_ranks_and_workers_is_the_uninterrupted_order(packed):
    straight, _ = take(readers(packed, 2, 2), 7)
    first, state = take(readers(packed, 2, 2), 3)
    rest, _ = take(readers(packed, 2, 2, state), 4)
    assert [a + b for a, b in zip(first, rest, strict=True)] == straight


def test_a_skipped_record_is_counted_once_over_epochs_and_resumes(packed, tmp_path):
    shards = [tmp_path / p.name for p in packed["shards"]]
    for p, q in zip(packed["shards"], shards, strict=True):
        q.write_bytes(p.read_bytes())
    rewrite_shard(shards[0], lambda name, data: b"not a png" if name == "000000001.image.png" else data)
    b = ShardBatches(shards, packed["sources"], 4, workers=2, seed=1)
    it = iter(b)
    for _ in range(3 * (N // 4)):  # 3 epochs (39 usable rows: 9 batches of 4 each)
        next(it)
    assert b.epoch == 3 and b.skipped == {"bad_image": 1}
    again = ShardBatches(shards, packed["sources"], 4, workers=1)
    again.load_state_dict(b.state_dict())
    assert again.skipped == {"bad_image": 1}


def test_a_position_of_the_first_checkpoint_format_still_resumes(packed):
    from modalign.training.distributed import World
    from modalign.training.shard_source import ShardSource

    _, state = take(readers(packed, 2, 2), 3)
    # the first format: per rank, records produced per slot (rank r's slots are 2r and 2r + 1)
    ranks = [
        {
            "epoch": 0,
            "produced": {str(s): state["done"][s] for s in (2 * r, 2 * r + 1)},
            "next_worker": state["next_worker"][str(r)],
            "skipped": {"bad_image": 1} if r else {},
        }
        for r in (0, 1)
    ]
    saved = json.dumps({"workers": 2, "ranks": ranks}).encode()
    resumed = [readers(packed, 2, 2)[r] for r in (0, 1)]
    for r, b in enumerate(resumed):
        ShardSource(b, N, World(r, 2)).load_state_tensors(
            {"source/shards": torch.frombuffer(bytearray(saved), dtype=torch.uint8)}
        )
    assert take(resumed, 2)[0] == take(readers(packed, 2, 2, state), 2)[0]
    assert resumed[0].skipped == {"bad_image": 1}
