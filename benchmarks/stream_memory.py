"""Peak memory of a streamed training run vs the corpus size, under an address-space limit.

Run: ``python benchmarks/stream_memory.py`` (about 10 minutes on 2 CPU cores). ``--json PATH``
writes every figure as one JSON object.

Protocol (fixed before looking at results): a synthetic corpus of large images (``--side`` px
RGB PNGs, 1024 by default; ``--distinct`` different files, the manifest's rows cycle over them so
that 100k rows need no 100k files) with a caption per row. For each corpus size (``--sizes``,
10,000 and 100,000 rows) ``modalign train`` runs ``--steps`` steps (global batch ``--batch``,
images resized to 64 px, a small CNN and text transformer, CLIP loss, no validation or test) in a
fresh process under ``prlimit --as=--limit-gb``:

- ``stream``: ``data.source: stream`` with ``--workers`` DataLoader workers;
- ``memory``: ``data.source: memory`` (every image preprocessed before training; float32
  3×64×64 = 48 KiB per row), at the sizes in ``--memory-sizes`` (10,000 unless given).

Peak RSS is the largest sum of the resident sizes of the run's process tree (trainer + workers),
sampled every 50 ms from /proc (``smaps_rollup``); forked workers share pages with the trainer,
which RSS counts once per process, so the proportional set size (PSS) is given too. The table
gives both per run, the RSS ratio to the smallest streamed corpus, the exit status (a run killed by
the limit shows as such) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_corpus(root: Path, rows: int, distinct: int, side: int) -> Path:
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:side, :side].astype(np.float32) / side
    for k in range(distinct):
        path = images / f"{k}.png"
        if path.exists():
            continue
        f = 2 + k % 7
        rgb = np.stack([np.sin(f * 6.28 * xx), np.cos(f * 6.28 * yy), np.sin(f * 3.14 * (xx + yy))], -1)
        Image.fromarray(((rgb + 1) * 127.5).astype(np.uint8)).save(path)
    manifest = root / f"manifest-{rows}.jsonl"
    with open(manifest, "w") as f:
        for i in range(rows):
            k = i % distinct
            row = {"id": f"r{i}", "image": f"images/{k}.png", "text": f"pattern {k % 7}", "split": "train"}
            f.write(json.dumps(row) + "\n")
    return manifest


def config(manifest: Path, source: str, steps: int, batch: int, workers: int) -> dict:
    return {
        "data": {
            "manifest": str(manifest),
            "val_split": None,
            "test_split": None,
            "source": source,
            "workers": workers,
        },
        "modalities": {
            "image": {"kind": "image", "transform": {"size": 64}, "encoder_params": {"widths": [16, 32]}},
            "text": {
                "kind": "text",
                "transform": {"vocab_size": 64, "max_length": 4},
                "encoder_params": {"width": 32, "depth": 1, "heads": 2},
            },
        },
        "model": {"embed_dim": 32},
        "trainer": {"max_steps": steps, "batch_size": batch, "checkpoint_every": steps, "warmup_steps": 2},
    }


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over ``pid`` and its descendants (PSS splits shared pages)."""
    rss = pss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return rss, pss


def run(cfg: dict, work: Path, limit_gb: float) -> dict:
    cfg_path = work / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    out = work / "run"
    cmd = [
        "prlimit",
        f"--as={int(limit_gb * 2**30)}",
        sys.executable,
        "-m",
        "modalign",
        "train",
        str(cfg_path),
    ]
    cmd += ["--out", str(out), "--overwrite"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = tree_memory(proc.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.05)
    err = proc.stderr.read() if proc.stderr is not None else ""
    return {
        "peak_rss_mb": round(peak_rss / 2**20, 1),
        "peak_pss_mb": round(peak_pss / 2**20, 1),
        "exit": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
        "error": err.strip().splitlines()[-1][:160] if proc.returncode else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--memory-sizes", type=int, nargs="*", default=[10_000])
    ap.add_argument("--distinct", type=int, default=200)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--limit-gb", type=float, default=4.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="stream-memory-") as tmp:
        root = Path(tmp)
        plan = [("stream", n) for n in args.sizes] + [("memory", n) for n in args.memory_sizes]
        for source, n in plan:
            manifest = make_corpus(root / "corpus", n, args.distinct, args.side)
            work = root / f"{source}-{n}"
            work.mkdir()
            r = run(config(manifest, source, args.steps, args.batch, args.workers), work, args.limit_gb)
            results.append({"source": source, "rows": n, **r})
            print(f"done {source} {n}: {r}", file=sys.stderr)
    base = next((r["peak_rss_mb"] for r in results if r["source"] == "stream" and r["exit"] == 0), None)
    print(f"\nstreamed vs in-memory training, {args.steps} steps of {args.batch}, {args.side}px images, ")
    print(f"limit {args.limit_gb} GB address space, {args.workers} workers when streaming\n")
    head = f"{'source':<8} {'rows':>8} {'peak RSS MB':>12} {'peak PSS MB':>12} {'RSS x smallest stream':>22}"
    print(head + f" {'exit':>5} {'s':>7}  error")
    for r in results:
        ratio = f"{r['peak_rss_mb'] / base:.2f}" if base and r["exit"] == 0 else "-"
        print(
            f"{r['source']:<8} {r['rows']:>8} {r['peak_rss_mb']:>12} {r['peak_pss_mb']:>12} {ratio:>22} "
            f"{r['exit']:>5} {r['seconds']:>7}  {r['error']}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": results})
        )


if __name__ == "__main__":
    main()
