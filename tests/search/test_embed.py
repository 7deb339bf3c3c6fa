"""modalign embed: chunks equal model.encode, absent rows counted, a killed run resumes byte-identically."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import search_fixtures
from typer.testing import CliRunner

from modalign.cli import app
from modalign.errors import ConfigError, IndexStoreError
from modalign.model import load
from modalign.search.embeddings import read_embeddings
from modalign.workflows.embed import run_embed

model_dir, corpus = search_fixtures.model_dir, search_fixtures.corpus  # shared session fixtures


def test_chunks_hold_model_encode_ids_and_metadata(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    summary = run_embed(
        model_dir, corpus, "image", tmp_path / "emb", chunk_rows=16, batch_size=8, show_progress=False
    )
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    kept = [r for i, r in enumerate(rows) if i not in (3, 5, 10, 11)]
    assert (
        summary.embedded == len(kept)
        and summary.skipped["absent"] == 3
        and sum(summary.skipped.values()) == 4
    )
    emb = read_embeddings(tmp_path / "emb")
    assert emb.ids == [r["id"] for r in kept]
    assert emb.metadata == [{k: v for k, v in r.items() if k != "id"} for r in kept]
    expected = load(model_dir).encode([r["image"] for r in kept], "image", batch_size=8)
    np.testing.assert_allclose(emb.vectors, expected, atol=1e-5)
    assert emb.plan["media_column"] == "image" and emb.plan["dim"] == expected.shape[1]


def test_killed_run_resumes_byte_identical(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    run_embed(model_dir, corpus, "text", tmp_path / "whole", chunk_rows=8, batch_size=4, show_progress=False)
    child = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from modalign.workflows.embed import run_embed\n"
        "def tick(c):\n"
        "    print(c, flush=True)\n"
        "    time.sleep(0.05)\n"
        f"run_embed(Path({str(model_dir)!r}), Path({str(corpus)!r}), 'text', Path({str(tmp_path / 'cut')!r}),"
        " chunk_rows=8, batch_size=4, show_progress=False, on_chunk=tick)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "2":  # three chunks are durable, the fourth is under way
        pass
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with pytest.raises(IndexStoreError, match="unfinished"):
        read_embeddings(tmp_path / "cut")
    summary = run_embed(
        model_dir, corpus, "text", tmp_path / "cut", chunk_rows=8, batch_size=4, show_progress=False
    )
    assert summary.chunks_resumed >= 3 and summary.chunks_written >= 1
    whole = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert whole == sorted(p.name for p in (tmp_path / "cut").iterdir())
    for name in whole:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "cut" / name).read_bytes(), name


def test_other_run_in_out_is_refused(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    run_embed(model_dir, corpus, "text", tmp_path / "emb", chunk_rows=16, show_progress=False)
    with pytest.raises(ConfigError, match="differs in chunk_rows"):
        run_embed(model_dir, corpus, "text", tmp_path / "emb", chunk_rows=8, show_progress=False)
    with pytest.raises(ConfigError, match="no modality 'video'"):
        run_embed(model_dir, corpus, "video", tmp_path / "other", show_progress=False)


def test_embed_command(model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    args = search_fixtures.embed_args(model_dir, corpus, "image", tmp_path / "e")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "skipped rows absent: 3" in result.output
    assert len(read_embeddings(tmp_path / "e").ids) == 68
