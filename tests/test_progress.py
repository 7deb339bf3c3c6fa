"""Progress outside a terminal: plain lines (step, loss, samples/s, ETA), not a silent Rich bar."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

from conftest import tiny_config, write_dataset

from modalign.training.progress import TrainingProgress

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(
    r"^train step (\d+)/(\d+)  loss \d+\.\d{4}  \d+ samples/s  elapsed \d+:\d\d:\d\d  ETA \d+:\d\d:\d\d$"
)


def test_plain_lines_on_the_first_every_nth_and_last_step():
    out = io.StringIO()  # not a TTY
    with TrainingProgress(start=0, total=12, enabled=True, stream=out, every=5, seconds=1e9) as advance:
        for _ in range(12):
            advance({"loss": 1.5, "samples_per_s": 100.0})
    lines = [ln for ln in out.getvalue().splitlines() if not ln.startswith("estimated")]
    assert all(LINE.match(ln) for ln in lines), lines
    assert [int(LINE.match(ln).group(1)) for ln in lines] == [1, 5, 10, 12]


def test_a_resumed_run_counts_from_its_step_and_disabled_prints_nothing():
    out = io.StringIO()
    with TrainingProgress(start=7, total=9, enabled=True, stream=out, every=50) as advance:
        advance({"loss": 1.0, "samples_per_s": 1.0})
        advance({"loss": 1.0, "samples_per_s": 1.0})
    assert [ln.split()[2] for ln in out.getvalue().splitlines()] == ["8/9", "9/9"]
    quiet = io.StringIO()
    with TrainingProgress(0, 3, enabled=False, stream=quiet) as advance:
        advance({"loss": 1.0, "samples_per_s": 1.0})
    assert quiet.getvalue() == ""


def test_a_training_run_piped_to_a_file_prints_progress_lines(tmp_path: Path) -> None:
    import yaml

    manifest = write_dataset(tmp_path / "data")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(tiny_config(manifest, max_steps=5)))
    log = tmp_path / "log.txt"
    with open(log, "w") as f:  # stdout and stderr to a file, as `modalign train ... > log 2>&1`
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "modalign",
                "train",
                str(tmp_path / "c.yaml"),
                "--out",
                str(tmp_path / "run"),
            ],
            stdout=f,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    steps = [m.group(1) for ln in text.splitlines() if (m := LINE.match(ln))]
    assert steps == ["1", "5"], text
    # a line per loaded split, and the estimate after the warm-up steps
    for split, n in (("train", 48), ("val", 8), ("test", 16)):
        assert re.search(rf"^loading {split}: {n} rows in \d+\.\d s$", text, re.M), text
    assert re.search(
        r"^estimated \S+ s/step \(steps 2-4\); ETA \d+:\d\d:\d\d for the 1 step left$", text, re.M
    )


def test_the_estimate_times_the_real_warm_up_steps() -> None:
    # the first step pays set-up (5 s); steps 2-4 take 1, 2 and 3 s: mean 2 s/step
    ends = iter([5.0, 6.0, 8.0, 11.0, 12.0])
    now = {"t": 0.0}

    def clock() -> float:
        return now["t"]

    out = io.StringIO()
    with TrainingProgress(0, 10, True, stream=out, every=100, seconds=1e9, clock=clock) as advance:
        for _ in range(5):
            now["t"] = next(ends)  # the step ran until then
            advance({"loss": 1.0, "samples_per_s": 1.0})
    estimates = [ln for ln in out.getvalue().splitlines() if ln.startswith("estimated")]
    # 6 steps left after step 4, at 2 s each
    assert estimates == ["estimated 2 s/step (steps 2-4); ETA 0:00:12 for the 6 steps left"]


def test_a_run_with_the_estimate_trains_the_same_weights(tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file

    from modalign.config import load_config
    from modalign.workflows.train import run_training

    manifest = write_dataset(tmp_path / "data", {"train": 32, "val": 4, "test": 8})
    cfg = load_config(raw=tiny_config(manifest, max_steps=6))
    run_training(cfg, tmp_path / "quiet", show_progress=False)
    capsys.readouterr()
    run_training(cfg, tmp_path / "shown", show_progress=True)
    err = capsys.readouterr().err
    assert re.search(
        r"^estimated [0-9.e+-]+ s/step \(steps 2-4\); ETA \d+:\d\d:\d\d for the 2 steps left$", err, re.M
    ), err
    a = load_file(tmp_path / "quiet" / "model" / "model.safetensors")
    b = load_file(tmp_path / "shown" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a)
