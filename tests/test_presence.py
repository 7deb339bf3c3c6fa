"""A modality absent from every training row is refused before training (and listed by data check)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_config, write_dataset

from modalign.config import load_config
from modalign.errors import DataError
from modalign.workflows.check import check_manifest
from modalign.workflows.train import run_training


def _rewrite(manifest: Path, change) -> None:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps(change(r)) + "\n" for r in rows))


def test_a_modality_never_present_in_training_is_refused_before_training(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "data")
    # the audio sits in a nested object that is not read: absent from every row
    _rewrite(
        manifest, lambda r: {**{k: v for k, v in r.items() if k != "audio"}, "speech": {"en": r["audio"]}}
    )
    cfg = load_config(raw=tiny_config(manifest, max_steps=2))
    with pytest.raises(
        DataError, match=r"modality audio \(column 'audio'\) is absent from every training row"
    ):
        run_training(cfg, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()
    problems, _ = check_manifest(manifest, cfg)
    assert [p.reason for p in problems] == ["modality_never_present", "split_missing_modality"]


def test_a_mostly_absent_modality_trains_with_a_warning(tmp_path: Path, capsys) -> None:
    manifest = write_dataset(tmp_path / "data")
    seen = {"n": 0}

    def drop_most(r):
        seen["n"] += 1
        return {**r, "audio": None} if r["split"] == "train" and seen["n"] % 4 else r

    _rewrite(manifest, drop_most)
    cfg = load_config(raw=tiny_config(manifest, max_steps=2))
    run_training(cfg, tmp_path / "run", show_progress=False)
    assert (
        "warning: modality audio (column 'audio') is absent from 75% of the training rows"
        in capsys.readouterr().err
    )
