"""modalign embed --engine ray: byte-identical to the local command, survives a killed worker and driver."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import search_fixtures
import torch
from typer.testing import CliRunner

from modalign.cli import app
from modalign.errors import ConfigError, DataError, IndexStoreError
from modalign.model import load
from modalign.search.embeddings import read_embeddings
from modalign.workflows.embed import run_embed

ray = pytest.importorskip("ray")  # the ray extra; CI installs it, so this never skips there

model_dir, corpus = search_fixtures.model_dir, search_fixtures.corpus  # shared session fixtures


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """One local Ray cluster for the module (its address); the driver uses one torch thread, so the
    two CPUs hold two workers at once."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    info = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    yield info.address_info["address"]
    ray.shutdown()
    torch.set_num_threads(threads)


def _same_files(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir()) and len(names) > 3
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def _record_pid(folder: Path, tag: str):  # type: ignore[no-untyped-def]
    def hook(c: int) -> None:  # runs in the Ray worker (shipped by value: a local function)
        from modalign.workflows import embed_ray

        loaded = int(bool(embed_ray._LOADED))  # whether this process has loaded the model already
        (folder / f"{tag}-{c}-{os.getpid()}-{loaded}").touch()

    return hook


def test_ray_output_is_byte_identical_to_local(
    cluster: str, model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    for modality in ("image", "text"):
        kw = {"chunk_rows": 8, "batch_size": 3, "show_progress": False}
        run_embed(model_dir, corpus, modality, tmp_path / f"local-{modality}", **kw)  # type: ignore[arg-type]
        summary = run_embed(
            model_dir,
            corpus,
            modality,
            tmp_path / f"ray-{modality}",
            engine="ray",
            worker_hook=_record_pid(pids, modality),
            **kw,  # type: ignore[arg-type]
        )
        assert summary.chunks_written == 9 and summary.embedded > 0
        _same_files(tmp_path / f"local-{modality}", tmp_path / f"ray-{modality}")
    ran = [name.split("-")[2:] for name in os.listdir(pids)]
    assert len(ran) == 18 and str(os.getpid()) not in {pid for pid, _ in ran}  # every chunk ran in a worker
    for pid in {pid for pid, _ in ran}:  # each worker process loaded the model once, at its first task
        assert [loaded for p, loaded in ran if p == pid].count("0") <= 1
    assert [loaded for _, loaded in ran].count("0") < 18


def test_ray_command_and_worker_errors(cluster: str, model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    args = search_fixtures.embed_args(model_dir, corpus, "image", tmp_path / "e")
    result = CliRunner().invoke(app, [*args, "--engine", "ray", "--chunk-rows", "32"])
    assert result.exit_code == 0, result.output
    assert "skipped rows absent: 3" in result.output and len(read_embeddings(tmp_path / "e").ids) == 68

    def bad_chunk(c: int) -> None:
        if c == 1:
            raise DataError("cannot decode", reason="corrupt", row=8, path="x.png")

    with pytest.raises(DataError) as raised:  # modalign's error with its fields, not Ray's wrapper
        run_embed(
            model_dir,
            corpus,
            "image",
            tmp_path / "f",
            chunk_rows=8,
            engine="ray",
            worker_hook=bad_chunk,
            show_progress=False,
        )
    assert (
        str(raised.value) == "row 8, file x.png: cannot decode [corrupt]" and raised.value.reason == "corrupt"
    )
    with pytest.raises(IndexStoreError, match="unfinished"):
        read_embeddings(tmp_path / "f")
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # more than the cluster's 2 CPUs: every task would wait forever
    try:
        with pytest.raises(ConfigError, match="largest node has 2: run with OMP_NUM_THREADS=2"):
            run_embed(model_dir, corpus, "image", tmp_path / "g", engine="ray", show_progress=False)
    finally:
        torch.set_num_threads(threads)


def test_model_saved_again_in_place_is_reloaded(
    cluster: str, model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    shutil.copytree(model_dir, tmp_path / "model")
    kw = {"chunk_rows": 16, "show_progress": False}
    run_embed(tmp_path / "model", corpus, "text", tmp_path / "before", engine="ray", **kw)  # type: ignore[arg-type]
    model = load(tmp_path / "model")
    with torch.no_grad():
        for w in model.parameters():
            w.mul_(1.5).add_(0.01)
    model.save(tmp_path / "model")  # the warm workers must not embed with the old weights
    run_embed(tmp_path / "model", corpus, "text", tmp_path / "local", **kw)  # type: ignore[arg-type]
    run_embed(tmp_path / "model", corpus, "text", tmp_path / "after", engine="ray", **kw)  # type: ignore[arg-type]
    _same_files(tmp_path / "local", tmp_path / "after")
    assert (tmp_path / "before/chunk-00000.npy").read_bytes() != (
        tmp_path / "after/chunk-00000.npy"
    ).read_bytes()


def test_workers_use_the_drivers_thread_count(
    cluster: str, model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    """Thread count changes float32 sums in real encoders (MiniLM's bytes differ between 1 and 2
    threads), so every worker must run with the driver's."""
    seen = tmp_path / "threads"
    seen.mkdir()

    def record(c: int) -> None:
        (seen / f"{c}-{torch.get_num_threads()}").touch()

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the module's driver uses 1; each task now reserves both CPUs
    try:
        kw = {"chunk_rows": 32, "show_progress": False}
        run_embed(model_dir, corpus, "image", tmp_path / "local", **kw)  # type: ignore[arg-type]
        run_embed(model_dir, corpus, "image", tmp_path / "ray", engine="ray", worker_hook=record, **kw)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(threads)
    assert sorted(os.listdir(seen)) == ["0-2", "1-2", "2-2"]
    _same_files(tmp_path / "local", tmp_path / "ray")


def test_killed_worker_is_retried(cluster: str, model_dir: Path, corpus: Path, tmp_path: Path) -> None:
    marker = tmp_path / "killed-once"

    def die_once(c: int) -> None:  # the worker running chunk 4 exits hard on the first attempt
        if c == 4 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)

    kw = {"chunk_rows": 8, "batch_size": 4, "show_progress": False}
    run_embed(model_dir, corpus, "image", tmp_path / "local", **kw)  # type: ignore[arg-type]
    run_embed(model_dir, corpus, "image", tmp_path / "ray", engine="ray", worker_hook=die_once, **kw)  # type: ignore[arg-type]
    assert marker.exists()
    _same_files(tmp_path / "local", tmp_path / "ray")


def test_killed_driver_resumes_byte_identical(
    cluster: str, model_dir: Path, corpus: Path, tmp_path: Path
) -> None:
    kw = {"chunk_rows": 8, "batch_size": 4, "show_progress": False}
    run_embed(model_dir, corpus, "text", tmp_path / "whole", **kw)  # type: ignore[arg-type]
    child = (  # a driver on the same cluster, killed once three chunks are durable
        "import time\n"
        "from pathlib import Path\n"
        "from modalign.workflows.embed import run_embed\n"
        "def tick(c):\n"
        "    print(c, flush=True)\n"
        "    time.sleep(0.2)\n"
        f"run_embed(Path({str(model_dir)!r}), Path({str(corpus)!r}), 'text', Path({str(tmp_path / 'cut')!r}),"
        " chunk_rows=8, batch_size=4, show_progress=False, on_chunk=tick,"
        f" engine='ray', address={cluster!r})\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    while proc.stdout.readline().strip() != "2":
        assert proc.poll() is None, "the driver ended before writing three chunks"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    summary = run_embed(model_dir, corpus, "text", tmp_path / "cut", engine="ray", **kw)  # type: ignore[arg-type]
    assert summary.chunks_resumed >= 3 and summary.chunks_written >= 1
    _same_files(tmp_path / "whole", tmp_path / "cut")


def test_engine_errors(
    model_dir: Path, corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match="'local' or 'ray'"):
        run_embed(model_dir, corpus, "text", tmp_path / "a", engine="spark", show_progress=False)
    with pytest.raises(ConfigError, match="needs --engine ray"):
        run_embed(model_dir, corpus, "text", tmp_path / "b", address="10.0.0.1:6379", show_progress=False)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"pip install 'modalign\[ray\]'"):
        run_embed(model_dir, corpus, "text", tmp_path / "c", engine="ray", show_progress=False)
