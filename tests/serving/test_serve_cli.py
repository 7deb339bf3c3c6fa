"""``modalign serve`` end to end: embed + index build from the CLI, then a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_fixtures import tiny_model
from typer.testing import CliRunner

from modalign.cli import app

httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_command_answers_search_and_media_from_a_cli_built_index(dataset: Path, tmp_path: Path) -> None:
    tiny_model(dataset, tmp_path / "model")
    runner = CliRunner()
    emb = runner.invoke(
        app,
        [
            "embed",
            str(tmp_path / "model"),
            "--data",
            str(dataset),
            "--modality",
            "image",
            "--out",
            str(tmp_path / "emb"),
        ],
    )
    assert emb.exit_code == 0, emb.output
    built = runner.invoke(app, ["index", "build", str(tmp_path / "emb"), "--out", str(tmp_path / "idx")])
    assert built.exit_code == 0, built.output

    port = _free_port()
    env = {**os.environ, "MODALIGN_API_KEY": "from-env", "OMP_NUM_THREADS": "1"}
    # no --model: the index names the model that embedded it
    cmd = [sys.executable, "-m", "modalign", "serve", str(tmp_path / "idx"), "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "modalign serve did not start"
            time.sleep(0.2)
        assert httpx.post(url + "/search", json={"text": "a circle"}).status_code == 401  # key from the env
        key = {"X-API-Key": "from-env"}
        r = httpx.post(url + "/search", json={"text": "a circle", "k": 3}, headers=key)
        assert r.status_code == 200, r.text
        hits = r.json()["results"]
        assert len(hits) == 3
        media = httpx.get(f"{url}/items/{hits[0]['id']}/media", headers=key)
        assert media.status_code == 200
        assert media.content == (dataset.parent / hits[0]["metadata"]["image"]).read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    # bound to loopback only: the listening socket was 127.0.0.1
    assert "http://127.0.0.1:" in (proc.stdout.read().decode() if proc.stdout else "")
