"""``data.source: stream``: DataLoader workers load the same batches the in-memory path collates.

Trained weights are bit-identical to ``data.source: memory`` (same rows per step, same per-sample
augmentation), also across a crash and ``--resume``; a row whose file is damaged after the
pre-training checks is counted once and trained as an all-absent row.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_config, write_dataset
from safetensors.torch import load_file

from modalign.config import load_config
from modalign.workflows.train import run_training


class Crash(Exception):
    pass


def config(manifest: Path, source: str, **data: object) -> object:
    raw = tiny_config(manifest, max_steps=8, checkpoint_every=4)
    raw["data"].update({"source": source, "workers": 2, **data})
    raw["modalities"]["image"]["transform"]["random_shift"] = 1  # per-sample augmentation on
    return load_config(raw=raw)


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def memory_run(dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("memory") / "run"
    run_training(config(dataset, "memory"), out, show_progress=False)
    return out


def test_streamed_training_equals_in_memory_training(dataset: Path, memory_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "stream"
    run_training(config(dataset, "stream"), out, show_progress=False)
    assert_same(weights(memory_run), weights(out))
    losses = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(x)["loss"] for x in (memory_run / "metrics.jsonl").read_text().splitlines()]
    assert losses == expected


def test_auto_streams_above_the_threshold_and_resumes_exactly(
    dataset: Path, memory_run: Path, tmp_path: Path
) -> None:
    cfg = config(dataset, "auto", stream_above=10)  # 48 training rows > 10: streamed

    def crash_at_5(step: int, metrics: dict) -> None:
        if step == 5:
            raise Crash

    with pytest.raises(Crash):
        run_training(cfg, tmp_path / "cut", show_progress=False, on_step=crash_at_5)
    run_training(cfg, tmp_path / "cut", resume=True, show_progress=False)
    assert_same(weights(memory_run), weights(tmp_path / "cut"))


def test_a_row_damaged_after_the_checks_is_counted_once(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "data", {"train": 32, "val": 4, "test": 8})
    (tmp_path / "data" / "images" / "3.png").write_bytes(b"not a png")  # train row 3
    cfg = config(manifest, "stream", workers=0)
    cfg = cfg.model_copy(update={"trainer": cfg.trainer.model_copy(update={"max_steps": 6})})
    report = run_training(cfg, tmp_path / "run", show_progress=False)  # 3 epochs of 2 batches
    skipped = {k: v for k, v in report.items() if k.startswith("data/skipped/train/")}
    assert skipped == {"data/skipped/train/bad_image": 1.0}
    shutil.rmtree(tmp_path / "run")


def test_training_from_shards_resumes_at_the_exact_sample(dataset: Path, tmp_path: Path) -> None:
    from modalign.data.manifest import read_manifest
    from modalign.data.sources import pack_manifest

    pack_manifest(read_manifest(dataset), tmp_path / "shards", shard_size=6)  # 72 rows: 12 shards
    cfg = config(dataset, "shards", shards=str(tmp_path / "shards"), shuffle_buffer=8, workers=0)

    def crash_at_5(step: int, metrics: dict) -> None:
        if step == 5:
            raise Crash

    run_training(cfg, tmp_path / "straight", show_progress=False)
    with pytest.raises(Crash):
        run_training(cfg, tmp_path / "cut", show_progress=False, on_step=crash_at_5)
    run_training(cfg, tmp_path / "cut", resume=True, show_progress=False)
    assert_same(weights(tmp_path / "straight"), weights(tmp_path / "cut"))
    log = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9)) and all(math.isfinite(r["loss"]) for r in log)


def test_a_failed_row_stays_counted_after_resume(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "data", {"train": 32, "val": 4, "test": 8})
    order = torch.randperm(32, generator=torch.Generator().manual_seed(0)).tolist()  # seed 0, epoch 0
    (tmp_path / "data" / "images" / f"{order[0]}.png").write_bytes(b"not a png")  # in batch 1 only
    cfg = config(manifest, "stream", workers=0)
    cfg = cfg.model_copy(
        update={"trainer": cfg.trainer.model_copy(update={"max_steps": 2, "checkpoint_every": 1})}
    )

    def crash_at_1(step: int, metrics: dict) -> None:
        if step == 1:
            raise Crash

    with pytest.raises(Crash):
        run_training(cfg, tmp_path / "run", show_progress=False, on_step=crash_at_1)
    report = run_training(cfg, tmp_path / "run", resume=True, show_progress=False)  # loads batch 2 only
    assert report["data/skipped/train/bad_image"] == 1.0
