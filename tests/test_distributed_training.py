"""``modalign train --nproc 2`` (torchrun, gloo) trains the same model as one process, and a run
checkpointed by 2 processes resumes exactly in 1.

Quickstart config, 20 steps, global batch 128 (64 rows per rank), per-sample image augmentation on
(``random_shift: 1``): the final weights of 1 and 2 processes agree to 1e-5 (float32 gradients are
summed in a different order by the all-reduce). The 2-process run checkpoints at step 10; deleting
its later files and resuming in one process ends with the same weights as well.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from modalign.config import load_config
from modalign.workflows.train import run_training

ROOT = Path(__file__).resolve().parents[1]
SETS = ["trainer.max_steps=20", "trainer.checkpoint_every=10", "trainer.val_every=10", "data.test_split=null"]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model" / "model.safetensors")


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ddp")
    one, two = base / "one", base / "two"
    cfg = load_config(ROOT / "configs/quickstart.yaml", SETS)
    cwd = os.getcwd()
    os.chdir(ROOT)  # the config's data paths are relative to the repository
    try:
        run_training(cfg, one, show_progress=False)
    finally:
        os.chdir(cwd)
    cmd = [
        sys.executable,
        "-m",
        "modalign",
        "train",
        "configs/quickstart.yaml",
        "--out",
        str(two),
        "--nproc",
        "2",
    ]
    for s in SETS:
        cmd += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"one": one, "two": two, "base": base}


def test_two_processes_train_the_same_weights_as_one(runs):
    diff = max_diff(weights(runs["one"]), weights(runs["two"]))
    assert diff <= 1e-5, diff
    # rank 0 alone wrote the log: one line per step, losses equal to the single process's
    lines = (runs["two"] / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 20
    one = (runs["one"] / "metrics.jsonl").read_text().splitlines()
    for a, b in zip(lines, one, strict=True):
        assert json.loads(a)["loss"] == pytest.approx(json.loads(b)["loss"], rel=1e-5, abs=1e-6)
    assert sorted(p.name for p in (runs["two"] / "checkpoints").iterdir()) == [
        "step_00000010.safetensors",
        "step_00000020.safetensors",
    ]


def test_resume_from_two_processes_in_one_is_exact(runs):
    crashed = runs["base"] / "two_then_one"
    shutil.copytree(runs["two"], crashed)
    for late in ["model", "report.json", "report.html", "checkpoints/step_00000020.safetensors"]:
        path = crashed / late
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    cfg = load_config(ROOT / "configs/quickstart.yaml", SETS)
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        run_training(cfg, crashed, resume=True, show_progress=False)
    finally:
        os.chdir(cwd)
    # it resumed at step 10: the first 10 log lines (timings included) are the 2-process run's
    before = (runs["two"] / "metrics.jsonl").read_text().splitlines()
    after = (crashed / "metrics.jsonl").read_text().splitlines()
    assert len(after) == 20 and after[:10] == before[:10] and after[10:] != before[10:]
    assert max_diff(weights(runs["one"]), weights(crashed)) <= 1e-5
    assert max_diff(weights(runs["two"]), weights(crashed)) <= 1e-5


def test_a_refused_run_directory_stops_every_process_with_one_clear_error(runs):
    cmd = [sys.executable, "-m", "modalign", "train", "configs/quickstart.yaml", "--out", str(runs["two"])]
    cmd += ["--nproc", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "error: " in done.stderr and "already holds a run" in done.stderr
    assert "process 1: process 0 stopped before training" in done.stderr
    assert "internal error" not in done.stderr
