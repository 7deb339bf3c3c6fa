"""Load test of ``modalign serve``: queries/s and latency with micro-batching vs without.

Run: ``python benchmarks/serve_load.py`` (about a minute on 2 CPU cores); ``--json PATH`` writes
every figure as one JSON object; ``--help`` for the knobs.

Protocol (fixed before looking at results):

- Model: the quickstart config's architecture (configs/quickstart.yaml: image, audio and text
  towers, 64-d), transforms fitted on the bundled data's train split, weights untrained (load does
  not depend on them). Index: ``--items`` random unit vectors (flat, exact), one metadata field.
- Server: a real uvicorn process on 127.0.0.1, started fresh for every run, torch limited to
  ``--threads`` threads; the two modes differ only in ``max_batch``: ``batched`` (64, wait 2 ms)
  vs ``unbatched`` (1: one encode call per query, on the same single model thread).
- Clients: ``--clients`` concurrent keep-alive connections (asyncio, a minimal HTTP/1.1 client in
  one process, so the load generator costs little next to the server), each
  sending ``POST /search {"text": ..., "k": 10}`` (distinct texts) back to back. After
  ``--warmup`` seconds, requests *started* in the next ``--seconds`` count; queries/s = answered
  requests / window; latency = send to full response, p50/p99 over the window. Any non-200
  answer or transport error counts as an error.
- ``--rounds`` rounds, modes alternating (batched first in odd rounds), each figure the median over
  rounds. Ratio = batched / unbatched queries/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODES = {"batched": 64, "unbatched": 1}


def build_artifacts(work: Path, items: int) -> tuple[Path, Path]:
    """The untrained quickstart model and a flat index of random vectors of its dimension."""
    import numpy as np

    from modalign.config import load_config
    from modalign.data.dataset import fit_transforms, split_rows
    from modalign.data.loading import open_manifest
    from modalign.search import Index
    from modalign.workflows.build import build_model, build_sources

    os.chdir(ROOT)  # the config's data paths are relative to the repository
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    manifest = open_manifest(cfg.data.manifest, cfg.data.archive)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, split_rows(manifest, "split", "train"))
    model = build_model(cfg, sources)
    model.save(work / "model")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((items, model.embed_dim)).astype(np.float32)
    ids = [f"item{i}" for i in range(items)]
    Index.build(
        work / "index", vectors, ids, [{"group": i % 10} for i in range(items)], info={"modality": "image"}
    )
    return work / "model", work / "index"


def serve_child(args: argparse.Namespace) -> None:
    """The server process: open the artifacts and run uvicorn until killed."""
    import torch

    torch.set_num_threads(args.threads)
    from modalign.serving import ServeSettings
    from modalign.serving.server import build_app, serve

    app = build_app(args.index, args.model, ServeSettings(max_batch=args.max_batch, timeout_s=60))
    serve(app, "127.0.0.1", args.port)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    model: Path, index: Path, max_batch: int, threads: int
) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    port = free_port()
    cmd = [sys.executable, __file__, "--child-serve", "--model", str(model), "--index", str(index)]
    cmd += ["--port", str(port), "--max-batch", str(max_batch), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


class Connection:
    """A minimal HTTP/1.1 keep-alive client: the load generator must cost far less than the server
    (httpx's async pool spends milliseconds per request at 32 connections)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        data = json.dumps(body).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(
            int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"
        )
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def load(url: str, clients: int, warmup: float, seconds: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    t0 = time.perf_counter()
    start, stop = t0 + warmup, t0 + warmup + seconds
    latencies: list[float] = []
    errors = 0

    async def worker(c: int) -> None:
        nonlocal errors
        conn = Connection(host, int(port))
        n = 0
        try:
            while True:
                sent = time.perf_counter()
                if sent >= stop:
                    return
                n += 1
                try:
                    status, body = await conn.post_json("/search", {"text": f"{c} {n % 10} {n}", "k": 10})
                    ok = status == 200 and len(json.loads(body)["results"]) == 10
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    ok = False
                    conn.close()
                    conn = Connection(host, int(port))
                if sent >= start:
                    latencies.append(time.perf_counter() - sent)
                    errors += not ok
        finally:
            conn.close()

    await asyncio.gather(*(worker(c) for c in range(clients)))
    latencies.sort()
    return {
        "qps": len(latencies) / seconds,
        "p50_ms": 1000 * latencies[len(latencies) // 2] if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else float("nan"),
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--items", type=int, default=20_000, help="vectors in the index")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--child-serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--max-batch", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_serve:
        serve_child(args)
        return

    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory(prefix="serve_load_") as tmp:
        model, index = build_artifacts(Path(tmp), args.items)
        for r in range(args.rounds):
            order = list(MODES) if r % 2 == 0 else list(MODES)[::-1]
            for mode in order:
                proc, url = start_server(model, index, MODES[mode], args.threads)
                try:
                    res = asyncio.run(load(url, args.clients, args.warmup, args.seconds))
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
                runs[mode].append(res)
                print(
                    f"round {r + 1} {mode:>9}: {res['qps']:8.1f} q/s  p50 {res['p50_ms']:7.1f} ms  "
                    f"p99 {res['p99_ms']:7.1f} ms  errors {res['errors']}",
                    file=sys.stderr,
                )

    summary = {
        mode: {key: statistics.median(run[key] for run in rs) for key in ("qps", "p50_ms", "p99_ms")}
        | {"errors": sum(run["errors"] for run in rs), "requests": sum(run["requests"] for run in rs)}
        for mode, rs in runs.items()
    }
    ratio = summary["batched"]["qps"] / summary["unbatched"]["qps"]
    print(
        f"\nmodalign serve, {args.clients} clients, {args.seconds:g} s windows, median of {args.rounds} "
        f"rounds, {args.items} items, torch threads {args.threads}, {os.cpu_count()} CPUs"
    )
    print(f"{'mode':<11}{'queries/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'errors':>8}")
    for mode, s in summary.items():
        print(
            f"{mode:<11}{s['qps']:>11.1f}{s['p50_ms']:>9.1f}{s['p99_ms']:>9.1f}{s['requests']:>10}{s['errors']:>8}"
        )
    print(f"throughput ratio batched / unbatched: {ratio:.2f}x (target >= 2x)")
    if args.json is not None:
        out = {
            "settings": {
                k: v
                for k, v in vars(args).items()
                if k in ("clients", "seconds", "warmup", "rounds", "items", "threads")
            },
            "modes": summary,
            "runs": runs,
            "ratio_qps": ratio,
        }
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
