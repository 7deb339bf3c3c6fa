"""Run directories: never overwritten unasked, locked while used, resumed only with the same config.

Issue 8, findings 2-6 (one test each) and the smaller ones: a damaged newest checkpoint, stray
temp files of killed writes, the umask of written files, an unwritable or file-valued ``--out``.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from conftest import tiny_config
from typer.testing import CliRunner

from modalign.cli import app
from modalign.config import load_config
from modalign.errors import ConfigError, ModalignError
from modalign.training.checkpoint import list_checkpoints
from modalign.workflows.train import run_training


class Crash(RuntimeError):
    pass


def crash_at(k: int) -> Any:
    def on_step(step: int, metrics: dict) -> None:
        if step == k:
            raise Crash

    return on_step


def config(dataset: Path, **trainer: Any) -> Any:
    return load_config(raw=tiny_config(dataset, **trainer))


def weights(run: Path) -> bytes:
    return (run / "model" / "model.safetensors").read_bytes()


# --- finding 2: eval writes its own directory -------------------------------------------------------


def test_eval_writes_its_own_directory_and_never_the_training_report(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run_training(config(dataset, max_steps=2), run, show_progress=False)
    trained = {name: (run / name).read_bytes() for name in ("report.json", "report.html")}
    args = ["eval", str(run / "model"), "--data", str(dataset), "--match-on", "label"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    where = run / "eval" / "manifest-test"  # RUN/eval/<manifest stem>-<split>
    assert json.loads((where / "report.json").read_text())["meta"]["split"] == "test"
    assert (where / "report.html").is_file()
    assert str(where / "report.json") in result.output.replace("\n", "")
    assert {name: (run / name).read_bytes() for name in trained} == trained
    # --out naming the training run itself is refused, and nothing is written
    result = CliRunner().invoke(app, [*args, "--out", str(run)])
    assert result.exit_code == 2 and "training report" in result.output, result.output
    assert {name: (run / name).read_bytes() for name in trained} == trained
    # every rows: the split is named "all"
    result = CliRunner().invoke(app, [*args, "--split", ""])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "eval" / "manifest-all" / "report.json").read_text())["meta"]["n_samples"] == 72


# --- finding 3: train never overwrites a directory unasked -------------------------------------------


def test_train_refuses_a_non_empty_out_unless_resume_or_overwrite(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = config(dataset, max_steps=2)
    run_training(cfg, run, show_progress=False)
    for ckpt in list_checkpoints(run / "checkpoints"):
        ckpt.unlink()  # an earlier run whose checkpoints were cleaned up
    before = weights(run), (run / "metrics.jsonl").read_bytes()
    with pytest.raises(ConfigError) as e:
        run_training(config(dataset, max_steps=2, seed=1), run, show_progress=False)
    assert "--resume" in str(e.value) and "--overwrite" in str(e.value) and str(run) in str(e.value)
    assert (weights(run), (run / "metrics.jsonl").read_bytes()) == before
    # --resume cannot continue it (no checkpoint, but a finished model): refused as well
    with pytest.raises(ConfigError, match="--overwrite"):
        run_training(cfg, run, resume=True, show_progress=False)
    assert weights(run) == before[0]
    # --overwrite replaces it: the result is the fresh run's, the old metrics are gone
    run_training(config(dataset, max_steps=2, seed=1), run, overwrite=True, show_progress=False)
    run_training(config(dataset, max_steps=2, seed=1), tmp_path / "fresh", show_progress=False)
    assert weights(run) == weights(tmp_path / "fresh") != before[0]
    assert (run / "metrics.jsonl").read_text().count("\n") == 2
    # a non-empty directory that is not a run: refused even with --overwrite, nothing deleted
    other = tmp_path / "other"
    (other / "model").mkdir(parents=True)
    (other / "notes.txt").write_text("mine")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ConfigError, match="not a modalign run"):
            run_training(cfg, other, show_progress=False, **flags)
    assert sorted(p.name for p in other.iterdir()) == ["model", "notes.txt"]


def test_cli_overwrite_flag(dataset: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(dataset, max_steps=2)))
    run = tmp_path / "run"
    args = ["train", str(cfg), "--out", str(run)]
    assert CliRunner().invoke(app, args).exit_code == 0
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--overwrite" in result.output
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, [*args, "--overwrite", "--resume"])
    assert result.exit_code == 2 and "either" in result.output


# --- finding 4: one run per directory at a time ------------------------------------------------------


def test_a_second_run_on_a_directory_in_use_is_refused(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    seen: list[Exception] = []

    def second_run(step: int, metrics: dict) -> None:
        if step == 1:  # run A is training (no checkpoint yet): run B starts on the same --out
            try:
                run_training(config(dataset, max_steps=2, seed=1), run, show_progress=False)
            except ModalignError as e:
                seen.append(e)

    run_training(config(dataset, max_steps=2), run, show_progress=False, on_step=second_run)
    assert len(seen) == 1 and "in use" in str(seen[0]) and f"pid {os.getpid()}" in str(seen[0])
    run_training(config(dataset, max_steps=2), tmp_path / "alone", show_progress=False)
    assert weights(run) == weights(tmp_path / "alone")  # A's weights, beside A's config.yaml
    assert yaml.safe_load((run / "config.yaml").read_text())["trainer"]["seed"] == 0
    assert not (run / "run.lock").exists()  # released at the end


def test_a_lock_left_by_a_killed_process_is_taken_over(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from modalign.workflows.runlock import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(60)",
            str(run / "run.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(ModalignError, match=f"in use by pid {holder.pid}"):
            run_training(config(dataset, max_steps=2), run, show_progress=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run_training(config(dataset, max_steps=2), run, show_progress=False)  # the holder is gone
    assert f"pid {holder.pid}" in capsys.readouterr().err
    assert (run / "model" / "model.safetensors").is_file()


# --- finding 5: resume checks the config it resumes --------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "line"),
    [
        ("model", {"embed_dim": 32}, "model.embed_dim: 16 -> 32"),
        ("image", {"size": 12}, "modalities.image.transform.size: 8 -> 12"),
        ("trainer", {"lr": 0.01}, "trainer.lr: 0.003 -> 0.01"),
        ("trainer", {"batch_size": 8}, "trainer.batch_size: 16 -> 8"),
        ("trainer", {"seed": 1}, "trainer.seed: 0 -> 1"),
        ("data", {"manifest": "other.jsonl"}, "data.manifest:"),
        ("objectives", [{"name": "clip"}, {"name": "uniformity"}], "objectives.1: (absent) -> "),
    ],
)
def test_resume_refuses_a_changed_config(
    dataset: Path, tmp_path: Path, key: str, value: Any, line: str
) -> None:
    run = tmp_path / "run"
    with pytest.raises(Crash):
        run_training(config(dataset), run, show_progress=False, on_step=crash_at(4))
    raw = tiny_config(dataset)
    if key == "image":
        raw["modalities"]["image"]["transform"].update(value)
    elif isinstance(value, dict):
        raw[key].update(value)
    else:
        raw[key] = value
    saved = (run / "config.yaml").read_bytes()
    with pytest.raises(ConfigError) as e:
        run_training(load_config(raw=raw), run, resume=True, show_progress=False)
    assert line in str(e.value) and "--overwrite" in str(e.value)
    assert (run / "config.yaml").read_bytes() == saved
    assert [p.name for p in list_checkpoints(run / "checkpoints")] == ["step_00000003.safetensors"]


def test_resume_may_grow_max_steps_and_change_how_often_it_saves(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(Crash):
        run_training(config(dataset), run, show_progress=False, on_step=crash_at(4))
    with pytest.raises(ConfigError, match="trainer.max_steps: 8 -> 2"):  # below the checkpoint's step 3
        run_training(config(dataset, max_steps=2), run, resume=True, show_progress=False)
    grown = config(dataset, max_steps=10, checkpoint_every=4, keep_checkpoints=3)
    run_training(grown, run, resume=True, show_progress=False)
    saved = yaml.safe_load((run / "config.yaml").read_text())["trainer"]
    assert (saved["max_steps"], saved["checkpoint_every"], saved["keep_checkpoints"]) == (10, 4, 3)
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))
    assert [p.name for p in list_checkpoints(run / "checkpoints")][-1] == "step_00000010.safetensors"


# --- finding 6: resume before the first checkpoint is a fresh run ------------------------------------


def test_resume_before_the_first_checkpoint_is_exactly_a_fresh_run(dataset: Path, tmp_path: Path) -> None:
    cfg = config(dataset, max_steps=4, checkpoint_every=3, batch_size=8)
    with pytest.raises(Crash):
        run_training(cfg, tmp_path / "cut", show_progress=False, on_step=crash_at(2))
    assert list_checkpoints(tmp_path / "cut" / "checkpoints") == []
    run_training(cfg, tmp_path / "cut", resume=True, show_progress=False)
    run_training(cfg, tmp_path / "full", show_progress=False)
    assert weights(tmp_path / "cut") == weights(tmp_path / "full")
    losses = [
        [json.loads(x)["loss"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        for d in ("cut", "full")
    ]
    assert losses[0] == losses[1] and len(losses[0]) == 4
    # --resume on a directory that holds nothing yet starts the run
    run_training(cfg, tmp_path / "new", resume=True, show_progress=False)
    assert weights(tmp_path / "new") == weights(tmp_path / "full")


# --- smaller findings -----------------------------------------------------------------------------


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(
    dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(dataset, checkpoint_every=2, batch_size=8)  # 8 steps
    with pytest.raises(Crash):
        run_training(cfg, tmp_path / "cut", show_progress=False, on_step=crash_at(5))
    ckpts = list_checkpoints(tmp_path / "cut" / "checkpoints")
    assert [p.name for p in ckpts] == ["step_00000002.safetensors", "step_00000004.safetensors"]
    ckpts[-1].write_bytes(ckpts[-1].read_bytes()[:1000])  # truncated
    capsys.readouterr()
    run_training(cfg, tmp_path / "cut", resume=True, show_progress=False)
    err = capsys.readouterr().err
    assert "step_00000004.safetensors" in err and "step_00000002.safetensors" in err
    run_training(cfg, tmp_path / "full", show_progress=False)
    assert weights(tmp_path / "cut") == weights(tmp_path / "full")
    assert (tmp_path / "cut" / "checkpoints" / "step_00000004.safetensors.corrupt").is_file()  # kept aside


def test_stray_temp_files_of_killed_writes_are_removed(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    with pytest.raises(Crash):
        run_training(config(dataset), run, show_progress=False, on_step=crash_at(4))
    stray = [
        run / ".config.yaml.k2j3l1.tmp",
        run / "checkpoints" / ".step_00000006.safetensors.a8d9_x.tmp",
        run / "transforms" / ".config.json.zz91.tmp",
    ]
    for p in stray:
        p.write_bytes(b"half a file")
    mine = run / "notes.tmp"  # not the pattern of our temp files: left alone
    mine.write_text("keep")
    run_training(config(dataset), run, resume=True, show_progress=False)
    assert not any(p.exists() for p in stray)
    assert mine.read_text() == "keep"
    assert not list(run.rglob(".*.tmp"))


def test_atomic_writes_respect_the_umask(tmp_path: Path) -> None:
    from modalign.io import atomic_write_bytes

    old = os.umask(0o022)
    try:
        for umask, mode in [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)]:
            os.umask(umask)
            path = tmp_path / f"file-{umask:o}"
            atomic_write_bytes(path, b"x")
            assert (path.stat().st_mode & 0o777, umask) == (mode, umask)
            atomic_write_bytes(path, b"y")  # replacing a file gives the same mode
            assert path.stat().st_mode & 0o777 == mode
    finally:
        os.umask(old)


def _no_data(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Record calls that would read the manifest (they must not happen)."""
    import modalign.workflows.train as train_module

    calls: list[Any] = []
    real = train_module.open_manifest

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "open_manifest", spy)
    return calls


def test_a_file_valued_or_unwritable_out_fails_before_any_data_is_read(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_data(monkeypatch)
    cfg = config(dataset, max_steps=2)
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    for out in (afile, afile / "run"):
        with pytest.raises(ModalignError, match="not a directory") as e:
            run_training(cfg, out, show_progress=False)
        assert str(afile) in str(e.value)
    # read-only: os.open of anything inside it fails as it would for a user without rights
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    real_open = os.open

    def refuse(path: Any, *args: Any, **kwargs: Any) -> int:
        if str(path).startswith(str(readonly)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ModalignError, match="cannot write") as e:
        run_training(cfg, readonly / "run", show_progress=False)
    monkeypatch.setattr(os, "open", real_open)
    assert "Permission denied" in str(e.value) and str(readonly) in str(e.value)
    assert calls == []
    # the CLI: exit code 2 and a message, for eval's --out too
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump(tiny_config(dataset, max_steps=2)))
    result = CliRunner().invoke(app, ["train", str(cfg_file), "--out", str(afile)])
    assert result.exit_code == 2 and "not a directory" in result.output, result.output
    result = CliRunner().invoke(
        app, ["eval", str(tmp_path / "model"), "--data", str(dataset), "--out", str(afile)]
    )
    assert result.exit_code == 2 and "not a directory" in result.output, result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_out_fails_before_any_data_is_read(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _no_data(monkeypatch)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    readonly.chmod(0o555)
    try:
        with pytest.raises(ModalignError, match="cannot write"):
            run_training(config(dataset, max_steps=2), readonly / "run", show_progress=False)
    finally:
        readonly.chmod(0o755)
    assert calls == []


def test_a_full_disk_is_a_clear_error_that_keeps_the_old_file(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from modalign.io import atomic_write_bytes

    path = tmp_path / "file.json"
    atomic_write_bytes(path, b"old")
    real_fsync = os.fsync

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(ModalignError, match="No space left") as e:
        atomic_write_bytes(path, b"new")
    assert str(path) in str(e.value)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["file.json"]
    # too little free space for the checkpoints is announced before training starts
    usage = SimpleNamespace(total=10**9, used=10**9 - 1000, free=1000)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)
    run_training(config(dataset, max_steps=2), tmp_path / "run", show_progress=False)
    err = capsys.readouterr().err
    assert "free" in err and str(tmp_path / "run") in err
