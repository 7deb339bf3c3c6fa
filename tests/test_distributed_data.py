"""Two gloo processes on streamed data: the rows that fail to load on rank 1 reach the report; a
manifest-streamed run resumed from 2 processes in 1 ends with the weights of 1 process throughout
(<= 1e-5); a run that streamed shards in 2 processes resumes in 1 at the next unseen sample.

Every rank loads only its own rows (its slice of each global batch from the manifest, its own
shards), so rank 0 alone never sees rank 1's failures: the oracle is the number of files damaged on
purpose where only rank 1 reads them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from conftest import tiny_config, write_dataset
from safetensors.torch import load_file

from modalign.config import load_config
from modalign.data.manifest import read_manifest
from modalign.data.sources import ShardBatches, ShardStream, pack_manifest, shard_paths
from modalign.workflows.train import run_training

ROWS = 32


def train_two(raw: dict[str, Any], out: Path) -> dict[str, Any]:
    """``modalign train --nproc 2`` on ``raw``; its report."""
    config = out.parent / f"{out.name}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))  # modality order = build order
    cmd = [sys.executable, "-m", "modalign", "train", str(config), "--out", str(out), "--nproc", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def raw_config(manifest: Path, max_steps: int, batch: int, **data: Any) -> dict[str, Any]:
    raw = tiny_config(manifest, max_steps=max_steps, batch_size=batch, checkpoint_every=1, keep_checkpoints=3)
    raw["data"].update({"val_split": None, "test_split": None, "workers": 0, **data})
    return raw


def test_rows_that_fail_on_rank_1_are_counted_in_the_streamed_report(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "data", {"train": ROWS})
    # one epoch of 2 global batches of 16: rank 1 loads positions 8-15 of each (train row = position)
    order = torch.randperm(ROWS, generator=torch.Generator().manual_seed(0)).tolist()  # seed 0, epoch 0
    rank1 = [order[8], order[16 + 8]]
    for row in rank1:
        (tmp_path / "data" / "images" / f"{row}.png").write_bytes(b"not a png")
    raw = raw_config(manifest, 2, 16, source="stream")
    raw["modalities"]["text"]["encoder_params"]["dropout"] = 0.0  # 1 vs 2 processes: other masks
    report = train_two(raw, tmp_path / "run")
    assert report["data/skipped/train/bad_image"] == 2.0
    # resumed from step 1 in one process: the run of one process throughout (same global batches)
    for late in ["checkpoints/step_00000002.safetensors", "model", "report.json", "report.html"]:
        remove(tmp_path / "run" / late)
    resumed = run_training(load_config(raw=raw), tmp_path / "run", resume=True, show_progress=False)
    assert resumed["data/skipped/train/bad_image"] == 2.0  # rank 1's first failure via the checkpoint
    one = run_training(load_config(raw=raw), tmp_path / "one", show_progress=False)
    assert one["data/skipped/train/bad_image"] == 2.0
    a, b = (load_file(tmp_path / r / "model" / "model.safetensors") for r in ("run", "one"))
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5


def test_shards_of_rank_1_count_and_resume_in_one_process_with_2_workers(
    tmp_path: Path, monkeypatch: Any
) -> None:
    manifest = write_dataset(tmp_path / "data", {"train": ROWS})
    # 8 shards of 4 rows; with 2 processes x 0 workers rank 1 reads stream 1 of 2 in epoch 0
    first = ShardStream(list(range(8)), [], [], []).stream_shards(1, 2)[0]  # type: ignore[arg-type]
    broken = 4 * first  # shard j holds rows 4j..4j+3
    (tmp_path / "data" / "images" / f"{broken}.png").write_bytes(b"not a png")
    pack_manifest(read_manifest(manifest), tmp_path / "shards", shard_size=4)
    raw = raw_config(manifest, 3, 8, source="shards", shards=str(tmp_path / "shards"), shuffle_buffer=2)
    # epoch 0: each rank 16 records, rank 1 one of them broken -> 3 steps of 4 rows per rank
    report = train_two(raw, tmp_path / "two")
    assert report["data/skipped/train/bad_image"] == 1.0

    # resume from the 2-process checkpoint of step 1 in one process: the rest of epoch 0
    run = tmp_path / "two"
    for late in ["checkpoints/step_00000002.safetensors", "checkpoints/step_00000003.safetensors"]:
        (run / late).unlink()
    for late in ["model", "report.json", "report.html"]:
        remove(run / late)
    step1 = []  # what the two processes trained on at step 1: each rank's first 4 good records
    for rank in (0, 1):
        reader = ShardBatches(shard_paths(tmp_path / "shards"), [], 4, rank=rank, world_size=2, buffer_size=2)
        keys = [f"s{int(item.key)}" for item in reader.items()]  # no sources: records are not decoded
        step1 += [k for k in keys if k != f"s{broken}"][:4]
    seen: list[str] = []
    batches = ShardBatches.epoch_batches

    def spy(self: ShardBatches) -> Any:
        for batch, rows in batches(self):
            seen.extend(batch.ids)
            yield batch, rows

    monkeypatch.setattr(ShardBatches, "epoch_batches", spy)
    raw["data"]["workers"] = 2  # 2 processes x no worker -> 1 process x 2 workers
    resumed = run_training(load_config(raw=raw), run, resume=True, show_progress=False)
    assert len(seen) == 2 * 8  # steps 2 and 3 of 8 rows in one process
    trained = step1 + seen  # 3 steps of epoch 0, whose 31 good records make 3 global batches of 8 + 7
    assert len(set(trained)) == len(trained) == 24 and f"s{broken}" not in trained
    assert resumed["data/skipped/train/bad_image"] == 1.0
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
