"""Time and peak memory of the pairwise losses: modalign's untiled, tiled and ``auto`` paths vs open_clip.

Run: ``python benchmarks/loss_memory.py`` (CLIP loss, B = 8,192 and 16,384, D = 512, open_clip and
modalign's three paths; 10 to 20 minutes on 2 CPU cores); ``--loss siglip`` does the same for the
SigLIP loss; ``--big`` adds modalign's tiled path alone at B = 65,536 and 262,144 (minutes to most
of an hour); ``--big --memory-probe 2`` measures only their peak memory (see ``--help``);
``--sweep`` times modalign's paths at small batches over several D, the measurement behind the
``chunk_size="auto"`` threshold (``modalign.objectives.tiled.resolve_chunk``). ``--json PATH``
writes every figure as one JSON object.

What is measured: forward + backward of the loss on fp32 unit rows ``(B, D)`` with a learnable
scale (and, for SigLIP, bias), gradients w.r.t. both inputs and the loss-side parameters. The
implementations (``--impls``):

- ``open_clip``: ``ClipLoss`` (two ``(B, B)`` logit matrices) or ``SigLipLoss``.
- ``untiled``: ``functional.info_nce`` / ``siglip`` with ``chunk_size=None``, one ``(B, B)``
  matrix (the objectives' default before ``auto``).
- ``tiled``: ``tiled_info_nce`` / ``tiled_siglip`` with ``--chunk`` (tile side, 4096) and
  ``--cache-mb`` (MiB of forward tiles kept for backward; the library default, 256, unless given;
  0 recomputes every tile).
- ``auto``: ``chunk_size="auto"``, the default of the ``clip`` and ``siglip`` objectives: untiled
  below ``tiled.AUTO_MIN_BATCH`` rows, tiled with side ``tiled.AUTO_CHUNK`` and the default cache
  from there on.

Each configuration runs in a **fresh subprocess**, so one run's allocations cannot hide another's.
Memory is the operating system's view: ``peak_rss`` is the child's ``ru_maxrss`` (whole process:
Python, torch, inputs and their gradients, the loss); ``loss_extra`` is ``peak_rss`` minus the
resident size just before the first loss call (inputs already allocated, written row-block by
row-block so that creating them leaves no higher peak). Time is the fastest wall-clock call over
``--rounds`` rounds of subprocesses, one per implementation in rotating order, of ``--repeats``
calls each (the first call pays one-off allocation costs; rotation keeps load from other processes
from favouring any one); ``cpu s`` is the process CPU time of the fastest call, less sensitive to a
shared machine. Ratios are each implementation's figure over open_clip's.

``--sweep`` is a time-only measurement: for each ``(D, B)`` one subprocess calls ``untiled``,
``tiled`` (side ``tiled.AUTO_CHUNK``, default cache) and ``auto`` in turn, call by call, for
``--sweep-seconds`` and reports each one's fastest call (wall clock and process CPU time) over the
untiled one's, with ``--sweep-threads`` threads (1 unless given).

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
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

DIM = 512
IMPLS = ("open_clip", "untiled", "tiled", "auto")


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


def _inputs(batch: int, dim: int):
    """Unit rows ``a, b`` (B, D), ``b`` a noisy copy of ``a``, built without (B, D) temporaries."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.empty(batch, dim)
    b = torch.empty(batch, dim)
    step = 4096
    for i in range(0, batch, step):  # block by block: no (B, D) temporaries
        x = torch.randn(min(step, batch - i), dim, generator=g)
        a[i : i + step] = torch.nn.functional.normalize(x, dim=1)
        y = x + 0.5 * torch.randn(x.shape, generator=g)
        b[i : i + step] = torch.nn.functional.normalize(y, dim=1)
    return a.requires_grad_(True), b.requires_grad_(True)


def _loss_fn(loss: str, impl: str, a, b, log_scale, bias, chunk: int, cache_mb: float) -> Callable | None:
    """The forward call of one implementation, or None when open_clip is not installed."""
    from modalign.objectives import functional as fn
    from modalign.objectives.tiled import tiled_info_nce, tiled_siglip

    if impl == "open_clip":
        module = _open_clip_loss_module()
        if module is None:
            return None
        if loss == "clip":
            clip_loss = module.ClipLoss()
            return lambda: clip_loss(a, b, log_scale.exp())
        siglip_loss = module.SigLipLoss()
        return lambda: siglip_loss(a, b, log_scale.exp(), bias)
    if impl == "tiled":
        if loss == "clip":
            return lambda: tiled_info_nce(a, b, log_scale.exp(), chunk_size=chunk, cache_mb=cache_mb)
        return lambda: tiled_siglip(a, b, log_scale.exp(), bias, chunk_size=chunk, cache_mb=cache_mb)
    chunk_size = None if impl == "untiled" else "auto"
    if loss == "clip":
        return lambda: fn.info_nce(a, b, log_scale.exp(), chunk_size=chunk_size)
    return lambda: fn.siglip(a, b, log_scale.exp(), bias, chunk_size=chunk_size)


def _loss_params(loss: str):
    import torch

    init = 2.659260 if loss == "clip" else 2.302585  # log(1/0.07), log(10): the objectives' inits
    log_scale = torch.tensor(init, requires_grad=True)
    bias = torch.tensor(-10.0, requires_grad=True)
    return log_scale, bias


def child(spec: dict) -> dict:
    """One configuration, in this (fresh) process; returns its figures."""
    import torch

    from modalign.objectives import tiled

    torch.set_num_threads(spec["threads"])
    loss, impl, batch, dim = spec["loss"], spec["impl"], spec["batch"], spec["dim"]
    a, b = _inputs(batch, dim)
    log_scale, bias = _loss_params(loss)
    if impl == "tiled" and spec["probe"] > 0:
        # Memory probe: only the first `probe` row/column spans are visited. Every buffer
        # (inputs, gradients, LSEs, tile, scratch, kept tiles) has its full-run size, so the
        # peak RSS is the full run's; time and loss value are NOT those of the full loss.
        full_spans = tiled._spans
        tiled._spans = lambda n, c: full_spans(n, c)[: spec["probe"]]  # type: ignore[assignment]
    loss_fn = _loss_fn(loss, impl, a, b, log_scale, bias, spec["chunk"], spec["cache_mb"])
    if loss_fn is None:
        return {"impl": impl, "batch": batch, "skipped": "open-clip-torch not installed"}

    rss_before = _rss_bytes()
    times, fwd_times, cpu_times, value = [], [], [], None
    for _ in range(spec["repeats"]):
        a.grad = b.grad = log_scale.grad = bias.grad = None
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = loss_fn()
        t1 = time.perf_counter()
        out.backward()
        t2 = time.perf_counter()
        cpu_times.append(time.process_time() - c0)
        times.append(t2 - t0)
        fwd_times.append(t1 - t0)
        value = float(out.detach())
        del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    chunk = {"tiled": spec["chunk"], "auto": tiled.resolve_chunk("auto", batch)}.get(impl)
    return {
        "loss_name": loss,
        "impl": impl,
        "batch": batch,
        "dim": dim,
        "chunk": chunk,
        "cache_mb": spec["cache_mb"] if impl == "tiled" else (tiled.CACHE_MB if chunk else None),
        "memory_probe_spans": spec["probe"] or None,
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


def sweep_child(spec: dict) -> dict:
    """modalign's three paths at one (B, D), interleaved call by call; fastest call of each."""
    import torch

    from modalign.objectives import tiled

    torch.set_num_threads(spec["threads"])
    loss, batch, dim = spec["loss"], spec["batch"], spec["dim"]
    a, b = _inputs(batch, dim)
    log_scale, bias = _loss_params(loss)
    impls = ("untiled", "tiled", "auto")
    fns = {i: _loss_fn(loss, i, a, b, log_scale, bias, tiled.AUTO_CHUNK, tiled.CACHE_MB) for i in impls}
    wall = dict.fromkeys(impls, float("inf"))
    cpu = dict.fromkeys(impls, float("inf"))
    calls, start = 0, time.perf_counter()
    while calls < 3 or (time.perf_counter() - start < spec["seconds"] and calls < 200):
        for impl, f in fns.items():
            assert f is not None
            a.grad = b.grad = log_scale.grad = bias.grad = None
            c0, t0 = time.process_time(), time.perf_counter()
            f().backward()
            wall[impl] = min(wall[impl], time.perf_counter() - t0)
            cpu[impl] = min(cpu[impl], time.process_time() - c0)
        calls += 1
    return {
        "loss_name": loss,
        "batch": batch,
        "dim": dim,
        "threads": spec["threads"],
        "calls": calls,
        "auto_chunk": tiled.resolve_chunk("auto", batch),
        "untiled_s": wall["untiled"],
        "untiled_cpu_s": cpu["untiled"],
        "tiled_ratio": wall["tiled"] / wall["untiled"],
        "auto_ratio": wall["auto"] / wall["untiled"],
        "tiled_cpu_ratio": cpu["tiled"] / cpu["untiled"],
        "auto_cpu_ratio": cpu["auto"] / cpu["untiled"],
    }


def run_child(spec: dict) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps(spec)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {
            "impl": spec.get("impl"),
            "batch": spec["batch"],
            "error": proc.stderr.strip().splitlines()[-1:],
        }
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


def _show(r: dict) -> None:
    if "error" in r or "skipped" in r:
        why = r.get("error") or r.get("skipped")
        print(f"{r.get('batch', ''):>8} {r.get('impl', ''):>10} {why}")
        return
    chunk = "-" if r["chunk"] is None else str(r["chunk"])
    print(
        f"{r['batch']:>8} {r['impl']:>10} {chunk:>6} {r['time_s']:>8.2f} {r['cpu_s']:>8.2f} "
        f"{r['peak_rss_gb']:>12.3f} {r['loss_extra_gb']:>14.3f} {r['loss']:>10.6f}"
        + ("  (memory probe: time/loss not meaningful)" if r.get("memory_probe_spans") else ""),
        flush=True,
    )


def _ratios(batch: int, merged: dict[str, dict]) -> list[dict]:
    ref = merged.get("open_clip")
    if ref is None or "time_s" not in ref:
        return []
    out = []
    for impl, r in merged.items():
        if impl == "open_clip" or "time_s" not in r:
            continue
        out.append(
            {
                "batch": batch,
                "impl": impl,
                "time_ratio": r["time_s"] / ref["time_s"],
                "cpu_ratio": r["cpu_s"] / ref["cpu_s"],
                "peak_rss_ratio": r["peak_rss_gb"] / ref["peak_rss_gb"],
                "loss_extra_ratio": r["loss_extra_gb"] / max(ref["loss_extra_gb"], 1e-9),
                "loss_rel_diff": abs(r["loss"] - ref["loss"]) / abs(ref["loss"]),
            }
        )
    return out


def _sweep(args: argparse.Namespace) -> list[dict]:
    rows = []
    print(f"\n--sweep ({args.loss}): fastest call / untiled's, wall and CPU, {args.sweep_threads} thread(s)")
    print(
        f"{'D':>6} {'B':>6} {'untiled ms':>11} {'tiled':>7} {'auto':>7} {'tiled cpu':>10} "
        f"{'auto cpu':>9} {'auto tiles':>11}"
    )
    for dim in args.sweep_dims:
        for batch in args.sweep_sizes:
            spec = {"mode": "sweep", "loss": args.loss, "batch": batch, "dim": dim}
            spec |= {"threads": args.sweep_threads, "seconds": args.sweep_seconds}
            r = run_child(spec)
            rows.append(r)
            if "error" in r:
                print(f"{dim:>6} {batch:>6} {r['error']}")
                continue
            tiles = "-" if r["auto_chunk"] is None else str(r["auto_chunk"])
            print(
                f"{dim:>6} {batch:>6} {r['untiled_s'] * 1e3:>11.2f} {r['tiled_ratio']:>7.2f} "
                f"{r['auto_ratio']:>7.2f} {r['tiled_cpu_ratio']:>10.2f} {r['auto_cpu_ratio']:>9.2f} "
                f"{tiles:>11}",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", choices=("clip", "siglip"), default="clip")
    parser.add_argument("--impls", nargs="*", choices=IMPLS, default=list(IMPLS))
    parser.add_argument("--sizes", type=int, nargs="*", default=[8192, 16384])
    parser.add_argument("--dim", type=int, default=DIM, help="embedding dimension D")
    parser.add_argument("--big", action="store_true", help="add modalign tiled at B = 65,536 and 262,144")
    parser.add_argument("--big-sizes", type=int, nargs="*", default=[65536, 262144])
    parser.add_argument("--chunk", type=int, default=4096, help="tile side of the explicit tiled path")
    parser.add_argument("--repeats", type=int, default=2, help="calls per subprocess")
    parser.add_argument("--rounds", type=int, default=2, help="rotating subprocess rounds")
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
    parser.add_argument("--sweep", action="store_true", help="time the paths at small B over D")
    parser.add_argument("--sweep-only", action="store_true", help="run only the sweep")
    parser.add_argument("--sweep-sizes", type=int, nargs="*", default=[256, 512, 768, 1024, 2048])
    parser.add_argument("--sweep-dims", type=int, nargs="*", default=[128, 512, 1024, 2048])
    parser.add_argument("--sweep-seconds", type=float, default=4.0, help="per (D, B) point")
    parser.add_argument(
        "--sweep-threads",
        type=int,
        default=1,
        help="1 by default: on a shared machine a multi-threaded small call can stall on a preempted "
        "thread for far longer than it computes",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(sweep_child(spec) if spec.get("mode") == "sweep" else child(spec)))
        return
    from modalign.objectives.tiled import AUTO_CHUNK, AUTO_MIN_BATCH, CACHE_MB

    if args.cache_mb is None:
        args.cache_mb = CACHE_MB
    base = {"loss": args.loss, "dim": args.dim, "chunk": args.chunk, "threads": args.threads}
    base |= {"cache_mb": args.cache_mb, "probe": 0}

    results: list[dict] = []
    ratios: list[dict] = []
    if not args.sweep_only:
        print(f"{args.loss} loss, D = {args.dim}; auto tiles (side {AUTO_CHUNK}) from B = {AUTO_MIN_BATCH}")
        head = (
            f"{'B':>8} {'impl':>10} {'chunk':>6} {'time s':>8} {'cpu s':>8} {'peak RSS GB':>12} "
            f"{'loss extra GB':>14} {'loss':>10}"
        )
        print(head)
        print("-" * len(head))
    for batch in [] if args.sweep_only else args.sizes:
        # Rotate the implementations over rounds and keep each one's fastest call, so that load
        # from other processes on a shared machine biases none of them.
        rounds: dict[str, list[dict]] = {impl: [] for impl in args.impls}
        for k in range(args.rounds):
            order = args.impls[k % len(args.impls) :] + args.impls[: k % len(args.impls)]
            for impl in order:
                spec = base | {"impl": impl, "batch": batch, "repeats": args.repeats}
                rounds[impl].append(run_child(spec))
        merged = {impl: _merge(runs) for impl, runs in rounds.items()}
        for r in merged.values():
            _show(r)
            results.append(r)
        ratios += _ratios(batch, merged)
    if args.big and not args.sweep_only:
        for batch in args.big_sizes:
            spec = base | {"impl": "tiled", "batch": batch, "repeats": 1, "probe": args.memory_probe}
            r = run_child(spec)
            _show(r)
            results.append(r)

    if ratios:
        print("\nover open_clip (time < 1: faster)")
        print(
            f"{'B':>8} {'impl':>10} {'time':>8} {'cpu':>8} {'peak RSS':>9} {'loss extra':>11} {'rel diff':>9}"
        )
        for r in ratios:
            print(
                f"{r['batch']:>8} {r['impl']:>10} {r['time_ratio']:>8.3f} {r['cpu_ratio']:>8.3f} "
                f"{r['peak_rss_ratio']:>9.3f} {r['loss_extra_ratio']:>11.3f} {r['loss_rel_diff']:>9.1e}"
            )
    big = [r for r in results if r.get("impl") == "tiled" and r.get("batch") in (65536, 262144)]
    for r in big:
        if "peak_rss_gb" in r:
            target = 1.5 if r["batch"] == 65536 else 4.0
            ok = "meets" if r["peak_rss_gb"] <= target else "MISSES"
            how = " (memory probe)" if r.get("memory_probe_spans") else ""
            print(f"B={r['batch']}: peak RSS {r['peak_rss_gb']:.3f} GB{how} {ok} the {target} GB target")
    sweep = _sweep(args) if args.sweep or args.sweep_only else []
    if args.json is not None:
        payload = {
            "loss": args.loss,
            "dim": args.dim,
            "chunk": args.chunk,
            "cache_mb": args.cache_mb,
            "auto_min_batch": AUTO_MIN_BATCH,
            "auto_chunk": AUTO_CHUNK,
            "threads": args.threads,
            "repeats": args.repeats,
            "rounds": args.rounds,
            "memory": "child ru_maxrss (whole process); loss_extra = peak - RSS before the loss",
            "runs": results,
            "ratios": ratios,
            "sweep_threads": args.sweep_threads,
            "sweep": sweep,
        }
        args.json.write_text(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
