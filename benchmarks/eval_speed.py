"""Time and peak memory of a retrieval-metric pass: modalign vs CLIP_benchmark, on the same embeddings.

Run: ``python benchmarks/eval_speed.py`` (N = 2,000, 5,000 and 10,000 pairs side by side, then
modalign alone at N = 100,000; about 15 minutes on 2 CPU cores). ``--sizes`` and ``--large`` change
the sizes, ``--large 0`` skips the big run, ``--json PATH`` writes every figure as one JSON object.

Protocol (fixed before looking at results):

- Data: N images and N captions, caption i belongs to image i (paired, one positive per query),
  fp32 unit rows of dimension ``--dim`` (512, CLIP ViT-B/32), drawn with a fixed seed so that
  caption i is a noisy copy of image i (R@1 well away from 0 and 1).
- Task: Recall@k (hit rate) for k in 1, 5, 10 in **both** directions (text->image and
  image->text), the numbers CLIP_benchmark reports.
- CLIP_benchmark (``clip-benchmark`` 1.6.x, its own functions imported from
  ``clip_benchmark.metrics.zeroshot_retrieval``): as its ``evaluate`` does after embedding --
  ``scores = texts @ images.T``, a dense ``(N, N)`` positive-pair matrix, then
  ``batchify(recall_at_k, ...)`` per k and direction with batch size ``--batch`` (64, its
  dataloader default), ``> 0`` and mean.
- modalign: ``modalign.evaluation.retrieval_metrics`` per direction with ``positives`` as index
  lists; it computes, in the same pass, precision/recall@k, MRR@10, nDCG@10, MAP@100 and the
  mean/median rank as well (work CLIP_benchmark does not do).
- Both sides check they agree: every R@k equal (scores are tie-free with random fp32 data).
- Each (side, N) runs in a **fresh subprocess**. Time: wall clock of the metric pass (best of
  ``--repeats``), after the embeddings exist. Memory: ``extra`` = the child's peak RSS
  (``ru_maxrss``) minus its resident size just before the pass (embeddings and torch loaded), i.e.
  the memory the metric pass needs beyond the embeddings. Threads: ``--threads`` (1) for both
  sides: on a machine shared with other jobs, multi-threaded torch ops wait for their sibling
  threads and the wall clock measures the neighbours; ``cpu s`` (process CPU time) is reported too.
- Large run: modalign alone at N = ``--large`` (100,000) in one direction (text->image; the other
  is the same computation transposed), to show the pass stays within 1 GB beyond the embeddings;
  CLIP_benchmark's dense (N, N) score and positive matrices would need 50 GB there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 5, 10)


def _rss_kb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _embeddings(n: int, dim: int) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    images = torch.empty(n, dim)
    texts = torch.empty(n, dim)
    for s in range(0, n, 8192):  # row blocks: no temporary larger than a block
        e = min(s + 8192, n)
        img = torch.nn.functional.normalize(torch.randn(e - s, dim, generator=g), dim=1)
        images[s:e] = img
        texts[s:e] = torch.nn.functional.normalize(img + 0.3 * torch.randn(e - s, dim, generator=g), dim=1)
    return images, texts


def _clip_benchmark(images: Any, texts: Any, batch: int) -> dict[str, float]:
    import torch
    from clip_benchmark.metrics import zeroshot_retrieval as zr

    scores = texts @ images.t()
    positive_pairs = torch.zeros_like(scores, dtype=bool)
    positive_pairs[torch.arange(len(scores)), torch.arange(len(scores))] = True
    out = {}
    for k in KS:
        hit = zr.batchify(zr.recall_at_k, scores, positive_pairs, batch, "cpu", k=k) > 0
        out[f"text->image/R@{k}"] = hit.double().mean().item()
        hit = zr.batchify(zr.recall_at_k, scores.T, positive_pairs.T, batch, "cpu", k=k) > 0
        out[f"image->text/R@{k}"] = hit.double().mean().item()
    return out


def _modalign(images: Any, texts: Any, directions: int) -> dict[str, float]:
    from modalign.evaluation import retrieval_metrics

    positives = [[i] for i in range(len(images))]
    out = {}
    pairs = [("text->image", texts, images), ("image->text", images, texts)][:directions]
    for name, q, c in pairs:
        m = retrieval_metrics(q, c, positives, KS, normalize=False)
        out.update({f"{name}/R@{k}": m[f"R@{k}"] for k in KS})
    return out


def child(
    side: str, n: int, dim: int, batch: int, repeats: int, directions: int, threads: int
) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(threads)
    images, texts = _embeddings(n, dim)
    before = _rss_kb()
    times, cpu, values = [], [], {}
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        values = (
            _clip_benchmark(images, texts, batch)
            if side == "clip_benchmark"
            else _modalign(images, texts, directions)
        )
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "seconds": min(times),
        "cpu_s": min(cpu),
        "extra_mb": max(peak - before, 0) / 1024,
        "values": values,
    }


def run_child(side: str, n: int, args: argparse.Namespace, directions: int = 2) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", side, "--n", str(n), "--dim", str(args.dim)]
    cmd += ["--batch", str(args.batch), "--repeats", str(args.repeats), "--directions", str(directions)]
    cmd += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000])
    p.add_argument("--large", type=int, default=100_000, help="modalign alone at this N (0 = skip)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=64, help="CLIP_benchmark's batch size")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--directions", type=int, default=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(
            json.dumps(
                child(args.child, args.n, args.dim, args.batch, args.repeats, args.directions, args.threads)
            )
        )
        return
    rows = []
    print(f"Recall@{{1,5,10}} both directions, N pairs, D={args.dim}, fp32, best of {args.repeats}")
    print(
        "extra MB = peak memory of the metric pass beyond the embeddings; ratios = modalign / CLIP_benchmark"
    )
    head = (
        "N",
        "CLIP_benchmark s",
        "modalign s",
        "speed-up",
        "CB cpu s",
        "ours cpu s",
        "CB extra MB",
        "ours MB",
    )
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, (8, 17, 11, 9, 9, 11, 12, 8))) + "  mem ratio")
    for n in args.sizes:
        theirs, ours = run_child("clip_benchmark", n, args), run_child("modalign", n, args)
        agree = all(abs(theirs["values"][k] - ours["values"][k]) < 1e-12 for k in theirs["values"])
        row = {
            "n": n,
            "clip_benchmark_s": theirs["seconds"],
            "modalign_s": ours["seconds"],
            "speedup": theirs["seconds"] / ours["seconds"],
            "clip_benchmark_cpu_s": theirs["cpu_s"],
            "modalign_cpu_s": ours["cpu_s"],
            "clip_benchmark_extra_mb": theirs["extra_mb"],
            "modalign_extra_mb": ours["extra_mb"],
            "memory_ratio": ours["extra_mb"] / max(theirs["extra_mb"], 1e-9),
            "values_agree": agree,
            "values": ours["values"],
        }
        rows.append(row)
        cells = (
            f"{n:>8,} {row['clip_benchmark_s']:>17.2f} {row['modalign_s']:>11.2f} {row['speedup']:>8.1f}x",
            f"{row['clip_benchmark_cpu_s']:>9.2f} {row['modalign_cpu_s']:>11.2f}",
            f"{row['clip_benchmark_extra_mb']:>12.0f} {row['modalign_extra_mb']:>8.0f}",
            f"{row['memory_ratio']:>10.2f}" + ("" if agree else "  VALUES DIFFER"),
        )
        print(" ".join(cells))
    large = None
    if args.large:
        args.repeats = 1
        r = run_child("modalign", args.large, args, directions=1)
        large = {
            "n": args.large,
            "modalign_s": r["seconds"],
            "modalign_cpu_s": r["cpu_s"],
            "modalign_extra_mb": r["extra_mb"],
            "values": r["values"],
        }
        print(
            f"modalign alone, N = {args.large:,}, text->image: {r['seconds']:.1f} s, "
            f"{r['extra_mb']:.0f} MB beyond the embeddings (bound 1024 MB); "
            f"R@1 = {r['values']['text->image/R@1']:.4f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"dim": args.dim, "batch": args.batch, "rows": rows, "large": large}, indent=2)
        )


if __name__ == "__main__":
    main()
