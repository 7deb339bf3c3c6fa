"""``data check`` knows what training will see: rows present/absent/bad per split and modality, with
progress; a split the run needs but cannot use is an error before training, not a crash after it."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import tiny_config, write_dataset
from typer.testing import CliRunner

from modalign.cli import app
from modalign.config import load_config
from modalign.errors import ConfigError, DataError
from modalign.workflows.check import check_data
from modalign.workflows.train import run_training


def _manifest(tmp_path: Path, change) -> Path:
    manifest = write_dataset(tmp_path / "data", {"train": 16, "val": 4, "test": 8})
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps(change(k, r)) + "\n" for k, r in enumerate(rows)))
    return manifest


def _table(output: str) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """(split, modality) -> (rows, present, absent, bad) from the printed table."""
    lines = output.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.split()[:3] == ["split", "rows", "modality"])
    out = {}
    for ln in lines[start + 1 :]:
        parts = ln.split()
        if len(parts) != 6 or not parts[1].isdigit():
            break
        out[parts[0], parts[2]] = tuple(int(x) for x in (parts[1], *parts[3:]))
    return out


def test_data_check_counts_present_absent_and_bad_rows_per_split(tmp_path: Path) -> None:
    def change(k: int, r: dict[str, Any]) -> dict[str, Any]:
        if r["split"] == "val" and k % 2:
            r["image"] = "images/missing.png"  # bad: the file does not exist
        if r["split"] == "test" and k % 4 == 0:
            r["audio"] = None  # absent
        if r["split"] == "train" and k % 8 == 1:
            r["text"] = ""  # absent (empty string)
        return r

    manifest = _manifest(tmp_path, change)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    # the counts restated from the rows written above
    expected = {}
    for split in ("train", "val", "test"):
        mine = [r for r in rows if r["split"] == split]
        for m in ("image", "audio", "text"):
            absent = sum(r[m] in (None, "") for r in mine)
            bad = sum(r[m] == "images/missing.png" for r in mine)
            expected[split, m] = (len(mine), len(mine) - absent - bad, absent, bad)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(manifest)))
    result = CliRunner().invoke(app, ["data", "check", str(manifest), "--config", str(cfg)])
    assert result.exit_code == 1, result.output  # the missing files are problems
    assert _table(result.output) == expected, result.output
    assert expected["val", "image"][3] == 2 and expected["test", "audio"][2] == 2
    assert "28 rows checked, 2 problem(s)" in result.output
    # progress outside a terminal: one plain line per split
    assert "checking train: 16 rows in" in result.output and "checking test: 8 rows in" in result.output


def test_plain_progress_lines_while_checking_a_long_split(tmp_path: Path, dataset: Path) -> None:
    stream = io.StringIO()  # not a terminal
    from modalign.data.progress import RowProgress

    with RowProgress("checking train", 3, stream=stream, seconds=0.0) as update:
        update(1)
        update(2)
        update(3)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("checking train: 1/3 rows (33%)  elapsed 0:00:00  ETA")
    assert lines[1].startswith("checking train: 2/3 rows (67%)")
    assert lines[-1].startswith("checking train: 3 rows in ") and len(lines) == 3
    assert RowProgress("x", 1).seconds == 10.0  # the cadence the README states
    quiet = io.StringIO()
    check_data(dataset, load_config(raw=tiny_config(dataset)), show_progress=False, stream=quiet)
    assert quiet.getvalue() == ""


def test_a_test_split_without_a_modality_is_refused_before_training(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, lambda k, r: {**r, "audio": None} if r["split"] == "test" else r)
    cfg = load_config(raw=tiny_config(manifest, max_steps=2))
    # before: trained, then evaluation died with IndexError and no report
    with pytest.raises(DataError, match=r"modality audio \(column 'audio'\) has no usable row in the test"):
        run_training(cfg, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    problems = check_data(manifest, cfg, show_progress=False).problems
    assert [p.reason for p in problems] == ["split_missing_modality"]
    assert "8 absent of 8" in str(problems[0])


def test_a_test_split_whose_files_of_a_modality_are_all_bad_is_refused(tmp_path: Path) -> None:
    def change(k: int, r: dict[str, Any]) -> dict[str, Any]:
        if r["split"] == "test":  # half undecodable (those rows are skipped), half absent
            r["audio"] = "audio/junk.wav" if k % 2 else None
        return r

    manifest = _manifest(tmp_path, change)
    (manifest.parent / "audio" / "junk.wav").write_bytes(b"RIFF\x00\x00")
    cfg = load_config(raw=tiny_config(manifest, max_steps=2))
    seen: list[int] = []
    with pytest.raises(DataError, match="has no usable row in the test split"):
        run_training(cfg, tmp_path / "run", show_progress=False, on_step=lambda s, m: seen.append(s))
    assert seen == []  # not one training step
    cov = {c.split: c for c in check_data(manifest, cfg, show_progress=False).coverage}
    test = cov["test"]
    assert (test.present["audio"], test.absent["audio"], test.bad["audio"]) == (0, 4, 4)


def test_select_best_without_validation_rows_is_refused(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, lambda k, r: {**r, "split": "train"} if r["split"] == "val" else r)
    cfg = load_config(raw=tiny_config(manifest, max_steps=2, select_best=True))
    with pytest.raises(DataError, match="trainer.select_best needs validation rows"):
        run_training(cfg, tmp_path / "run", show_progress=False)


def test_data_check_reports_the_splits_training_would_refuse(tmp_path: Path) -> None:
    names = {"train": "training", "val": "val", "test": "testing"}  # not the config's split names
    manifest = _manifest(tmp_path, lambda k, r: {**r, "split": names[r["split"]]})
    cfg = load_config(raw=tiny_config(manifest, max_steps=2))
    problems = check_data(manifest, cfg, show_progress=False).problems
    messages = [str(p) for p in problems if p.reason == "empty_split"]
    assert len(messages) == 2, problems
    assert "data.train_split='train' selects no rows" in messages[0] and "'training'" in messages[0]
    assert "data.test_split='test' selects no rows" in messages[1]
    with pytest.raises(ConfigError, match="data.train_split='train' selects no rows"):
        run_training(cfg, tmp_path / "run", show_progress=False)
