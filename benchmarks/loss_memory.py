"""Time and peak memory of the CLIP loss: modalign's tiled exact loss vs open_clip's ClipLoss.

Run: ``python benchmarks/loss_memory.py`` (B = 8,192 and 16,384, both implementations, a few
minutes on 2 CPU cores); ``--big`` adds modalign alone at B = 65,536 and 262,144 (minutes to most
of an hour); ``--big --memory-probe 2`` measures only their peak memory (see ``--help``). ``--json
PATH`` writes every figure as one JSON object.

What is measured: forward + backward of the symmetric InfoNCE loss on fp32 unit rows ``(B, 512)``
with a learnable scale, gradients w.r.t. both inputs and the scale. modalign runs
``tiled_info_nce`` with ``--chunk`` (tile side, 4096) and ``--cache-mb`` (MiB of forward tiles kept
for backward; the library default, 256, unless given; 0 recomputes every tile). Each configuration
runs in a **fresh subprocess**, so one run's allocations cannot hide another's. Memory is the
operating system's view: ``peak_rss`` is the child's ``ru_maxrss`` (whole process: Python, torch,
inputs and their gradients, the loss); ``loss_extra`` is ``peak_rss`` minus the resident size just
before the first loss call (inputs already allocated, written row-block by row-block so that
creating them leaves no higher peak). Time is the fastest wall-clock call over ``--rounds``
alternating subprocesses of ``--repeats`` calls each (the first call pays one-off allocation costs;
alternation keeps load from other processes from favouring either side); ``cpu s`` is the process
CPU time of the fastest call, less sensitive to a shared machine.

open_clip's loss module is loaded by file path (its package ``__init__`` imports torchvision):
``pip install --no-deps open-clip-torch==3.3.0``; without it only modalign's rows are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

DIM = 512


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _open_clip_loss_module():
    try:
        root = Path(str(metadata.distribution("open-clip-torch").locate_file("")))
    except metadata.PackageNotFoundError:
        return None
    path = root / "open_clip" / "loss.py"
    spec = importlib.util.spec_from_file_location("_bench_open_clip_loss", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(impl: str, batch: int, chunk: int, repeats: int, threads: int, cache_mb: float, probe: int) -> dict:
    """One configuration, in this (fresh) process; returns its figures."""
    import torch

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    a = torch.empty(batch, DIM)
    b = torch.empty(batch, DIM)
    step = 4096
    for i in range(0, batch, step):  # block by block: no (B, D) temporaries
        x = torch.randn(min(step, batch - i), DIM, generator=g)
        a[i : i + step] = torch.nn.functional.normalize(x, dim=1)
        y = x + 0.5 * torch.randn(x.shape, generator=g)
        b[i : i + step] = torch.nn.functional.normalize(y, dim=1)
    a.requires_grad_(True)
    b.requires_grad_(True)
    log_scale = torch.tensor(2.659260, requires_grad=True)

    if impl == "open_clip":
        module = _open_clip_loss_module()
        if module is None:
            return {"skipped": "open-clip-torch not installed"}
        clip_loss = module.ClipLoss()

        def loss_fn():
            return clip_loss(a, b, log_scale.exp())
    else:
        from modalign.objectives import tiled
        from modalign.objectives.tiled import tiled_info_nce

        if probe > 0:
            # Memory probe: only the first `probe` row/column spans are visited. Every buffer
            # (inputs, gradients, LSEs, tile, scratch, kept tiles) has its full-run size, so the
            # peak RSS is the full run's; time and loss value are NOT those of the full loss.
            full_spans = tiled._spans
            tiled._spans = lambda n, c: full_spans(n, c)[:probe]  # type: ignore[assignment]

        def loss_fn():
            return tiled_info_nce(a, b, log_scale.exp(), chunk_size=chunk, cache_mb=cache_mb)

    rss_before = _rss_bytes()
    times, fwd_times, cpu_times, value = [], [], [], None
    for _ in range(repeats):
        a.grad = b.grad = log_scale.grad = None
        c0 = time.process_time()
        t0 = time.perf_counter()
        loss = loss_fn()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        cpu_times.append(time.process_time() - c0)
        times.append(t2 - t0)
        fwd_times.append(t1 - t0)
        value = float(loss.detach())
        del loss
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return {
        "impl": impl,
        "batch": batch,
        "chunk": chunk if impl == "modalign" else None,
        "cache_mb": cache_mb if impl == "modalign" else None,
        "memory_probe_spans": probe or None,
        "time_s": min(times),
        "forward_s": min(fwd_times),
        "all_times_s": times,
        "cpu_s": min(cpu_times),
        "peak_rss_gb": peak / 1e9,
        "rss_before_loss_gb": rss_before / 1e9,
        "loss_extra_gb": (peak - rss_before) / 1e9,
        "loss": value,
        "grad_scale": float(log_scale.grad),
    }


def run_child(
    impl: str, batch: int, chunk: int, repeats: int, threads: int, cache_mb: float, probe: int = 0
) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, str(batch), str(chunk), str(repeats)]
    cmd += [str(threads), str(cache_mb), str(probe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"impl": impl, "batch": batch, "error": proc.stderr.strip().splitlines()[-1:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _merge(runs: list[dict]) -> dict:
    ok = [r for r in runs if "time_s" in r]
    if not ok:
        return runs[0]
    merged = dict(min(ok, key=lambda r: r["time_s"]))
    merged["cpu_s"] = min(r["cpu_s"] for r in ok)
    merged["peak_rss_gb"] = max(r["peak_rss_gb"] for r in ok)
    merged["loss_extra_gb"] = max(r["loss_extra_gb"] for r in ok)
    merged["rounds"] = runs
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="add modalign at B = 65,536 and 262,144")
    parser.add_argument("--sizes", type=int, nargs="*", default=[8192, 16384])
    parser.add_argument("--big-sizes", type=int, nargs="*", default=[65536, 262144])
    parser.add_argument("--chunk", type=int, default=4096, help="tile side of the tiled loss")
    parser.add_argument("--repeats", type=int, default=2, help="calls per subprocess")
    parser.add_argument("--rounds", type=int, default=2, help="alternating subprocess rounds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--cache-mb", type=float, default=None, help="MiB of forward tiles kept (library default)"
    )
    parser.add_argument(
        "--memory-probe",
        type=int,
        default=0,
        metavar="N",
        help="big sizes: visit only the first N tile spans (peak memory of the full run; time and "
        "loss are not)",
    )
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, batch, chunk, repeats, threads, cache_mb, probe = args.child
        out = child(impl, int(batch), int(chunk), int(repeats), int(threads), float(cache_mb), int(probe))
        print(json.dumps(out))
        return
    if args.cache_mb is None:
        from modalign.objectives.tiled import CACHE_MB

        args.cache_mb = CACHE_MB

    results: list[dict] = []
    head = (
        f"{'B':>8} {'impl':>10} {'time s':>8} {'cpu s':>8} {'peak RSS GB':>12} "
        f"{'loss extra GB':>14} {'loss':>10}"
    )
    print(head)
    print("-" * len(head))

    def show(r: dict) -> None:
        if "error" in r or "skipped" in r:
            why = r.get("error") or r.get("skipped")
            print(f"{r.get('batch', ''):>8} {r.get('impl', ''):>10} {why}")
            return
        print(
            f"{r['batch']:>8} {r['impl']:>10} {r['time_s']:>8.2f} {r['cpu_s']:>8.2f} "
            f"{r['peak_rss_gb']:>12.3f} "
            f"{r['loss_extra_gb']:>14.3f} {r['loss']:>10.6f}"
            + ("  (memory probe: time/loss not meaningful)" if r.get("memory_probe_spans") else ""),
            flush=True,
        )

    ratios = []
    for batch in args.sizes:
        # Alternate the implementations over rounds and keep each one's fastest call, so that
        # load from other processes on a shared machine biases neither side.
        rounds: dict[str, list[dict]] = {"modalign": [], "open_clip": []}
        for k in range(args.rounds):
            order = ["modalign", "open_clip"] if k % 2 == 0 else ["open_clip", "modalign"]
            for impl in order:
                rounds[impl].append(
                    run_child(impl, batch, args.chunk, args.repeats, args.threads, args.cache_mb)
                )
        ours, theirs = _merge(rounds["modalign"]), _merge(rounds["open_clip"])
        show(ours)
        show(theirs)
        results += [ours, theirs]
        if "time_s" in ours and "time_s" in theirs:
            ratios.append(
                {
                    "batch": batch,
                    "time_ratio": ours["time_s"] / theirs["time_s"],
                    "cpu_ratio": ours["cpu_s"] / theirs["cpu_s"],
                    "peak_rss_ratio": ours["peak_rss_gb"] / theirs["peak_rss_gb"],
                    "loss_extra_ratio": ours["loss_extra_gb"] / max(theirs["loss_extra_gb"], 1e-9),
                    "loss_rel_diff": abs(ours["loss"] - theirs["loss"]) / abs(theirs["loss"]),
                }
            )
    if args.big:
        for batch in args.big_sizes:
            r = run_child("modalign", batch, args.chunk, 1, args.threads, args.cache_mb, args.memory_probe)
            show(r)
            results.append(r)

    if ratios:
        print("\nmodalign / open_clip (target: time <= 0.75)")
        print(f"{'B':>8} {'time':>8} {'cpu':>8} {'peak RSS':>9} {'loss extra':>11} {'rel diff':>9}")
        for r in ratios:
            print(
                f"{r['batch']:>8} {r['time_ratio']:>8.3f} {r['cpu_ratio']:>8.3f} "
                f"{r['peak_rss_ratio']:>9.3f} "
                f"{r['loss_extra_ratio']:>11.3f} {r['loss_rel_diff']:>9.1e}"
            )
    big = [r for r in results if r.get("impl") == "modalign" and r.get("batch") in (65536, 262144)]
    for r in big:
        if "peak_rss_gb" in r:
            target = 1.5 if r["batch"] == 65536 else 4.0
            ok = "meets" if r["peak_rss_gb"] <= target else "MISSES"
            how = " (memory probe)" if r.get("memory_probe_spans") else ""
            print(f"B={r['batch']}: peak RSS {r['peak_rss_gb']:.3f} GB{how} {ok} the {target} GB target")
    if args.json is not None:
        payload = {
            "dim": DIM,
            "chunk": args.chunk,
            "cache_mb": args.cache_mb,
            "threads": args.threads,
            "repeats": args.repeats,
            "rounds": args.rounds,
            "memory": "child ru_maxrss (whole process); loss_extra = peak - RSS before the loss",
            "runs": results,
            "ratios": ratios,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
