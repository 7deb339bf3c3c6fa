"""Fixtures shared by the search tests: a tiny trained model and a corpus with absent rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import tiny_config, write_jsonl

from modalign.config import load_config
from modalign.workflows.train import run_training


@pytest.fixture(scope="session")
def model_dir(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("embed_run") / "run"
    run_training(load_config(raw=tiny_config(dataset, max_steps=2)), run, show_progress=False)
    return run / "model"


@pytest.fixture(scope="session")
def corpus(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic rows with absolute paths; rows 3, 10, 11 lack the image, row 5's file is gone."""
    rows = [json.loads(line) for line in dataset.read_text().splitlines()]
    for r in rows:
        r["image"], r["audio"] = str(dataset.parent / r["image"]), str(dataset.parent / r["audio"])
    for i in (3, 10, 11):
        rows[i]["image"] = None
    rows[5]["image"] = str(dataset.parent / "images" / "nope.png")
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    write_jsonl(path, rows)
    return path


def embed_args(model_dir: Path, corpus: Path, modality: str, out: Path) -> list[str]:
    """The ``modalign embed`` command line (without options) of one modality of ``corpus``."""
    return ["embed", str(model_dir), "--data", str(corpus), "--modality", modality, "--out", str(out)]
