"""kill -9 during adds, deletes and saves: every reopen succeeds and holds every acknowledged change."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from crash_worker import vector_of

from modalign.search import Index

HERE = Path(__file__).resolve().parent
TRIALS = 50


def read_acks(ack_file: Path) -> tuple[set[str], set[str], list[str]]:
    """(ids acked added, ids acked deleted, the change begun but not acknowledged, if any)."""
    added, deleted, pending = set(), set(), []
    for line in ack_file.read_text().splitlines():
        state, op, *arg = line.split(" ")
        if state == "try":
            pending = [op, *arg]
            continue
        pending = []
        if op == "add":
            added |= set(arg[0].split(","))
        elif op == "del":
            deleted.add(arg[0])
    return added, deleted, pending


def test_kill_9_never_loses_an_acknowledged_change(tmp_path: Path) -> None:
    rng = random.Random(0)
    paths = {kind: tmp_path / kind for kind in ("flat", "hnsw")}
    expected: dict[Path, set[str]] = {}
    for kind, path in paths.items():
        ids = [f"base{i}" for i in range(200)]
        Index.build(
            path, np.stack([vector_of(i) for i in ids]), ids, [{"id": i} for i in ids], kind=kind
        ).close()
        expected[path] = set(ids)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    server = subprocess.Popen(
        [sys.executable, str(HERE / "crash_worker.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert server.stdin is not None and server.stdout is not None
    in_flight = {"add": 0, "del": 0, "save": 0}
    acknowledged = 0
    try:
        for trial in range(TRIALS):
            path = paths["flat" if trial % 2 else "hnsw"]
            acks = tmp_path / f"acks{trial}.txt"
            server.stdin.write(f"{path} {trial + 1} {acks}\n")
            server.stdin.flush()
            pid = int(server.stdout.readline())
            # kill at a random moment after the first acknowledged change (fsync may be slow
            # on a busy disk: a fixed delay could kill every child before its first change)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (not acks.exists() or "ack" not in acks.read_text()):
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.2))
            os.kill(pid, signal.SIGKILL)
            assert server.stdout.readline().strip() == "reaped"

            added, deleted, pending = read_acks(acks)
            acknowledged += acks.read_text().count("ack ")
            if pending:
                in_flight[pending[0]] += 1
            maybe_added = set(pending[1].split(",")) if pending[:1] == ["add"] else set()
            maybe_deleted = set(pending[1:2]) if pending[:1] == ["del"] else set()
            must = (expected[path] | added) - deleted
            with Index.open(path) as idx:  # never raises: that is half the test
                found = set(idx.ids)
                assert must - maybe_deleted <= found, f"trial {trial}: lost acknowledged adds"
                assert not found & deleted, f"trial {trial}: acknowledged deletes came back"
                assert found <= must | maybe_added, f"trial {trial}: items nobody added"
                for item in rng.sample(sorted(found), 5):
                    vec, meta = idx.get(item)
                    np.testing.assert_allclose(
                        vec, vector_of(item) / np.linalg.norm(vector_of(item)), atol=1e-6
                    )
                    assert meta == {"id": item}
                assert len(idx.search(vector_of("q"), k=10)[0]) == 10
            expected[path] = found
    finally:
        server.stdin.close()
        server.wait(timeout=30)
    # the kills landed inside changes, not only between them (reported when the test fails)
    print("kills inside a change:", in_flight, "acknowledged changes:", acknowledged)
    assert acknowledged >= TRIALS and sum(in_flight.values()) > 0, (acknowledged, in_flight)
