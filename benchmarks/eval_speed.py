"""Time and peak memory of a retrieval-metric pass: modalign vs CLIP_benchmark, on the same embeddings.

Run: ``python benchmarks/eval_speed.py`` (N = 1,000, 2,000 and 4,000 pairs side by side, then
modalign alone at N = 100,000, minutes of CPU time on one core). ``--sizes`` and ``--large`` change
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
- modalign: ``modalign.evaluation.retrieval.retrieval_metrics_both`` (both directions; with one
  positive per query it ranks by counting and computes the score matrix once per direction, where
  CLIP_benchmark computes it once and transposes it -- the second product is inside our timing),
  ``positives`` as index lists; it computes, in the same pass, precision/recall@k, MRR@10,
  nDCG@10, MAP@100 and the mean/median rank as well (work CLIP_benchmark does not do);
  ``modalign R@k`` is the same call with ``map_at_100=False`` (the ranked list only 10 deep: no
  MAP@100), closer to CLIP_benchmark's work (with ranks by counting it costs about the same).
- ``extra`` is conservative: the peak RSS may also hold the embedding generator's freed
  temporaries (row blocks of 8,192).
- Large run: progress lines on stderr (CPU time so far and projected to the end), also kept in
  the JSON (``large.progress``: [rows ranked, CPU s] every 2%).
- Both sides check they agree: every R@k equal (scores are tie-free with random fp32 data).
- Each (side, N) runs in a **fresh subprocess**. Time: wall clock of the metric pass (best of
  ``--repeats``), after the embeddings exist. Memory: ``extra`` = the child's peak RSS
  (``ru_maxrss``) minus its resident size just before the pass (embeddings and torch loaded), i.e.
  the memory the metric pass needs beyond the embeddings. Threads: ``--threads`` (1) for both
  sides: on a machine shared with other jobs, multi-threaded torch ops wait for their sibling
  threads and the wall clock measures the neighbours; ``cpu s`` (process CPU time) is reported too.
- Large run: modalign alone at N = ``--large`` (100,000), both directions, to show the pass stays
  within 1 GB beyond the embeddings; CLIP_benchmark's dense (N, N) score and positive matrices
  would need 50 GB there.
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


def _progress_lines(trace: list[list[float]]) -> Any:
    """An ``on_chunk`` callback: a line on stderr every 2% with the CPU time projected to the end."""
    c0 = time.process_time()

    def report(done: int, total: int) -> None:
        cpu = time.process_time() - c0
        if trace and 50 * done // total == 50 * trace[-1][0] // total and done < total:
            return
        trace.append([done, cpu])
        print(
            f"  {done:,}/{total:,} query rows ranked, {cpu:.0f} s CPU, "
            f"projected {cpu * total / max(done, 1):.0f} s CPU",
            file=sys.stderr,
            flush=True,
        )

    return report


def _modalign(images: Any, texts: Any, map_at_100: bool, on_chunk: Any = None) -> dict[str, float]:
    from modalign.evaluation.retrieval import retrieval_metrics_both

    positives = [[i] for i in range(len(images))]
    t2i, i2t = retrieval_metrics_both(
        texts, images, positives, KS, normalize=False, map_at_100=map_at_100, on_chunk=on_chunk
    )
    return {
        f"{name}/R@{k}": m[f"R@{k}"] for name, m in (("text->image", t2i), ("image->text", i2t)) for k in KS
    }


def child(
    side: str, n: int, dim: int, batch: int, repeats: int, threads: int, progress: bool = False
) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    import torch

    torch.set_num_threads(threads)
    images, texts = _embeddings(n, dim)
    before = _rss_kb()
    times, cpu, values = [], [], {}
    trace: list[list[float]] = []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        if side == "clip_benchmark":
            values = _clip_benchmark(images, texts, batch)
        else:  # "modalign": every metric; "modalign_rk": R@k, precision/recall@k, MRR, nDCG (no MAP@100)
            on_chunk = _progress_lines(trace) if progress else None
            values = _modalign(images, texts, map_at_100=side == "modalign", on_chunk=on_chunk)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extra_mb = max(peak - before, 0) / 1024
    out = {"seconds": min(times), "cpu_s": min(cpu), "extra_mb": extra_mb, "values": values}
    return out | ({"progress": trace} if progress else {})


def run_child(side: str, n: int, args: argparse.Namespace, progress: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", side, "--n", str(n), "--dim", str(args.dim)]
    cmd += ["--batch", str(args.batch), "--repeats", str(args.repeats)]
    cmd += ["--threads", str(args.threads)] + (["--progress"] if progress else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    # progress lines go to our stderr as they come; the child's result is its last stdout line
    err = None if progress else subprocess.PIPE
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    p.add_argument("--large", type=int, default=100_000, help="modalign alone at this N (0 = skip)")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--batch", type=int, default=64, help="CLIP_benchmark's batch size")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="torch threads of both sides")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        sides = (args.child, args.n, args.dim, args.batch, args.repeats, args.threads, args.progress)
        print(json.dumps(child(*sides)))
        return
    print(f"Recall@{{1,5,10}} both directions, N pairs, D={args.dim}, fp32, {args.threads} thread(s)")
    print("s = wall clock (cpu = process CPU time) of the metric pass, best of", args.repeats)
    print("MB = peak memory of the pass beyond the embeddings; x = CLIP_benchmark / modalign")
    print("modalign = every metric (MAP@100 needs a 100-deep list); modalign R@k = without MAP@100\n")
    head = ("N", "side", "s", "cpu s", "MB", "x time", "x cpu", "mem ratio")
    widths = (8, 16, 8, 8, 8, 7, 7, 10)
    print(" ".join(f"{h:>{w}}" for h, w in zip(head, widths)))
    rows = []
    for n in args.sizes:
        theirs = run_child("clip_benchmark", n, args)
        figures = f"{theirs['seconds']:>8.2f} {theirs['cpu_s']:>8.2f} {theirs['extra_mb']:>8.0f}"
        print(f"{n:>8,} {'CLIP_benchmark':>16} {figures}")
        row: dict[str, Any] = {"n": n, "clip_benchmark": theirs}
        for side, label in (("modalign", "modalign"), ("modalign_rk", "modalign R@k")):
            ours = run_child(side, n, args)
            ours["agrees"] = all(
                abs(theirs["values"][k] - ours["values"][k]) < 1e-12 for k in theirs["values"]
            )
            ours["speedup"] = theirs["seconds"] / ours["seconds"]
            ours["cpu_speedup"] = theirs["cpu_s"] / ours["cpu_s"]
            ours["memory_ratio"] = ours["extra_mb"] / max(theirs["extra_mb"], 1e-9)
            row[side] = ours
            cells = (
                f"{'':>8} {label:>16} {ours['seconds']:>8.2f} {ours['cpu_s']:>8.2f} {ours['extra_mb']:>8.0f}",
                f"{ours['speedup']:>6.1f}x {ours['cpu_speedup']:>6.1f}x {ours['memory_ratio']:>10.2f}",
            )
            print(" ".join(cells) + ("" if ours["agrees"] else "  VALUES DIFFER"))
        rows.append(row)
    large = None
    if args.large:
        args.repeats = 1
        print(f"\nmodalign alone, N = {args.large:,} (progress on stderr):", file=sys.stderr)
        r = run_child("modalign", args.large, args, progress=True)  # every metric, both directions
        large = {
            "n": args.large,
            "modalign_s": r["seconds"],
            "modalign_cpu_s": r["cpu_s"],
            "modalign_extra_mb": r["extra_mb"],
            "values": r["values"],
            "progress": r["progress"],
        }
        print(
            f"modalign alone, N = {args.large:,}, both directions: {r['seconds']:.1f} s "
            f"({r['cpu_s']:.1f} s CPU), "
            f"{r['extra_mb']:.0f} MB beyond the embeddings (bound 1024 MB); "
            f"R@1 = {r['values']['text->image/R@1']:.4f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"dim": args.dim, "batch": args.batch, "rows": rows, "large": large}, indent=2)
        )


if __name__ == "__main__":
    main()
