"""Crash safety: ``kill -9`` at random moments of ``modalign train``, then ``--resume``.

Every trial runs the CLI (``modalign train CONFIG --out RUN``) in its own process, kills it with
SIGKILL, checks what the kill left on disk and resumes with ``--resume``. The oracle is an
uninterrupted run of the same command: after the resume, ``model/model.safetensors`` must be
byte-identical to it and ``metrics.jsonl`` must hold the same losses, and every checkpoint present
at the moment of the kill must be a whole, readable file.

Moments are drawn with a fixed seed, of two kinds:
- a random time in the uninterrupted run's wall-clock span (data loading, steps, saves, evaluation);
- a random atomic write, killed after its temp file is complete and before ``os.replace``: always
  the writes of the final save (the last checkpoint and ``model/``), plus random other ones.

Speed: a fresh interpreter takes seconds to import torch, so one helper process imports modalign,
warms it up with one run (one intra-op thread, so forking after it is safe) and forks a process per
run; each forked run is a few tenths of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import tiny_config, write_dataset

from modalign.errors import CheckpointError
from modalign.model_io import load_safetensors
from modalign.training.checkpoint import list_checkpoints, read_checkpoint_state

TIME_TRIALS, WRITE_TRIALS, SEED = 10, 10, 8

SERVER = r"""
import json, os, random, shutil, signal, sys, time, traceback
from pathlib import Path

import torch

torch.set_num_threads(1)  # no OpenMP pool in this process: forking it stays safe
from modalign.cli import app

work, cfg = Path(sys.argv[1]), sys.argv[2]
n_time, n_write, seed = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])


def run_cli(run, flags, log, hook=None):
    # in a forked process: the CLI, stdout/stderr to a log; hook pauses every atomic write's rename
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if hook is not None:
        events, acks = hook
        real = os.replace

        def paused(src, dst, *args, **kwargs):
            if str(dst).startswith(str(run) + os.sep):
                os.write(events, (os.path.relpath(dst, run) + "\n").encode())
                os.read(acks, 1)
            return real(src, dst, *args, **kwargs)

        os.replace = paused
    code = 1
    try:
        app(["train", cfg, "--out", str(run), *flags], prog_name="modalign")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else int(e.code is not None)
    except BaseException:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def status(pid):
    _, st = os.waitpid(pid, 0)
    return {"signal": os.WTERMSIG(st)} if os.WIFSIGNALED(st) else {"code": os.WEXITSTATUS(st)}


def paused_run(run, log, kill_at):
    # kill_at: index of the atomic write to kill at (None: acknowledge every write)
    ev_r, ev_w = os.pipe()
    ack_r, ack_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ev_r)
        os.close(ack_w)
        run_cli(run, [], log, hook=(ev_w, ack_r))
    os.close(ev_w)
    os.close(ack_r)
    events = []
    with os.fdopen(ev_r) as stream:
        for line in stream:
            events.append(line.strip())
            if kill_at is not None and len(events) == kill_at + 1:
                os.kill(pid, signal.SIGKILL)
                break
            os.write(ack_w, b"x")
    os.close(ack_w)
    return events, status(pid)


def timed_run(run, log, delay, flags):
    # a fresh run that ends before the kill is started again (from scratch) with half the delay
    while True:
        pid = os.fork()
        if pid == 0:
            run_cli(run, flags, log)
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)  # a process that already ended is a zombie until waited for
        st = status(pid)
        if "signal" in st or flags:
            return st, delay
        shutil.rmtree(run)
        delay /= 2


def resume(run, log):
    pid = os.fork()
    if pid == 0:
        run_cli(run, ["--resume"], log)
    return status(pid)


try:  # warm-up here: the lazy imports of a first run are then done for every fork
    app(["train", cfg, "--out", str(work / "warm")], prog_name="modalign")
except SystemExit as e:
    assert not e.code, e.code

t0 = time.perf_counter()
events, st = paused_run(work / "ref", work / "ref.log", None)
span = time.perf_counter() - t0
assert st == {"code": 0}, (st, (work / "ref.log").read_text())

rng = random.Random(seed)
final = [i for i, e in enumerate(events) if e.startswith("model" + os.sep)]
final.append(max(i for i, e in enumerate(events) if e.startswith("checkpoints" + os.sep)))
others = [i for i in range(len(events)) if i not in final]
writes = final + rng.sample(others, n_write - len(final))
plan = [("time", rng.uniform(0.0, span)) for _ in range(n_time)] + [("write", k) for k in writes]
twice = set(rng.sample(range(len(plan)), 3))  # the resume is killed too, then resumed again

results = []
for i, (kind, where) in enumerate(plan):
    run, snap = work / f"run{i}", work / f"snap{i}"
    if kind == "time":
        st, where = timed_run(run, work / f"run{i}.log", where, [])
        event = None
    else:
        seen, st = paused_run(run, work / f"run{i}.log", where)
        event = seen[-1]
    stray = sorted(str(p.relative_to(run)) for p in run.rglob(".*.tmp")) if run.exists() else []
    if run.exists():
        shutil.copytree(run, snap)
    again = None
    if i in twice:
        again, _ = timed_run(run, work / f"again{i}.log", rng.uniform(0.0, span / 2), ["--resume"])
        shutil.copytree(run, work / f"snap{i}b")
    back = resume(run, work / f"resume{i}.log")
    results.append(
        dict(kind=kind, at=where, event=event, kill=st, stray=stray, again=again, resume=back)
    )
json.dump({"events": events, "span": span, "trials": results}, open(work / "results.json", "w"))
"""


def _losses(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_model(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "data", {"train": 24, "val": 4, "test": 8})
    raw = tiny_config(
        manifest, max_steps=6, batch_size=8, checkpoint_every=1, val_every=3, threads=1, device="cpu"
    )
    raw["modalities"]["image"]["transform"]["random_shift"] = 1  # augmentation draws from the RNG
    raw["data"]["test_split"] = None  # no evaluation: kills land in training and saving
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    work = tmp_path / "work"
    work.mkdir()
    args = [str(work), str(cfg), str(TIME_TRIALS), str(WRITE_TRIALS), str(SEED)]
    done = subprocess.run([sys.executable, "-c", SERVER, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads((work / "results.json").read_text())
    trials = out["trials"]
    reference = work / "ref"
    weights = (reference / "model" / "model.safetensors").read_bytes()
    assert weights == (work / "warm" / "model" / "model.safetensors").read_bytes()  # forks agree

    corrupt: list[str] = []
    for i, t in enumerate(trials):
        run = work / f"run{i}"
        log = (work / f"resume{i}.log").read_text()
        assert t["resume"] == {"code": 0}, (t, log[-2000:])
        assert (run / "model" / "model.safetensors").read_bytes() == weights, (t, log[-2000:])
        assert _losses(run) == _losses(reference), t
        assert not list(run.rglob(".*.tmp")) and not (run / "run.lock").exists(), t
        for snap in (work / f"snap{i}", work / f"snap{i}b"):  # as the kill(s) left them
            for ckpt in list_checkpoints(snap / "checkpoints"):
                try:
                    read_checkpoint_state(ckpt)
                except CheckpointError as e:
                    corrupt.append(f"trial {i}: {e}")
            if (snap / "model" / "model.safetensors").exists():
                try:
                    load_safetensors(snap / "model" / "model.safetensors")
                except CheckpointError as e:
                    corrupt.append(f"trial {i}: {e}")

    killed = [t for t in trials if "signal" in t["kill"]]
    in_save = [t for t in killed if t["kind"] == "write" or t["stray"]]
    in_final_save = [t for t in killed if t["event"] is not None and t["event"].startswith("model")]
    summary = {
        "trials": len(trials),
        "killed": len(killed),
        "kills during a save": len(in_save),
        "resumes killed too": sum(1 for t in trials if t["again"] is not None and "signal" in t["again"]),
        "kills during the final model save": len(in_final_save),
        "clock kills that left a temp file": sum(1 for t in trials if t["kind"] == "time" and t["stray"]),
        "writes per run": len(out["events"]),
        "run seconds": round(out["span"], 2),
        "corrupt files": len(corrupt),
    }
    print(summary)
    assert corrupt == []
    assert len(trials) >= 20 and len(killed) == len(trials)
    assert len(in_final_save) >= 3 and len(in_save) >= WRITE_TRIALS
