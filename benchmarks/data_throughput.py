"""Samples/s of the three training batch sources on the bundled icon data (configs/mdi_icons.yaml).

Run: ``python benchmarks/data_throughput.py`` (a few minutes on 2 CPU cores); ``--json PATH``
writes every figure as one JSON object.

Protocol (fixed before looking at results): the training split of ``data/mdi_icons`` (64 px PNG
icons resized to 32 px, text tokenised), transforms fitted once, batches of ``--batch`` rows in
the trainer's seeded order, ``--epochs`` epochs (drop-last), OMP_NUM_THREADS=1 everywhere:

- ``memory``: ``load_split`` preprocesses the split into tensors, then every batch is collated
  from them (today's path); its cold figure includes the preprocessing.
- ``stream``: ``data.source: stream``, DataLoader workers load and transform each batch's rows.
- ``shards``: the manifest packed by ``modalign data pack`` (packing timed apart), batches read
  from the shards by ``ShardBatches`` (shuffle buffer 1000).
- ``hf`` (added in a later session, protocol fixed before its first run): the manifest's ``id``,
  ``split``, text and image columns saved with ``datasets``' ``save_to_disk``, the PNG bytes inside
  an ``Image`` feature (saving timed apart), streamed exactly like ``stream`` from the
  memory-mapped Arrow files. Skipped when ``datasets`` is not installed.

Streamed sources run with 1 and 2 workers (``--workers``). Cold = samples delivered / wall time
from the start (worker start-up and preprocessing included); the ratio column is over the
in-memory path's cold figure. Nothing is trained: this is the data side alone.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from modalign.config import load_config  # noqa: E402
from modalign.data.dataset import collate, fit_transforms, split_rows  # noqa: E402
from modalign.data.loading import load_split, open_manifest  # noqa: E402
from modalign.data.manifest import Manifest, read_manifest  # noqa: E402
from modalign.data.sources import ShardBatches, pack_manifest  # noqa: E402
from modalign.data.sources.stream import stream_split  # noqa: E402
from modalign.workflows.build import build_sources  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def plan(n: int, batch: int, epochs: int):
    for epoch in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch)).tolist()
        for k in range(n // batch):
            yield epoch, order[k * batch : (k + 1) * batch]


def streamed_run(
    manifest: Manifest, sources: Any, split: str, workers: int, args: argparse.Namespace
) -> tuple[int, float]:
    """Samples delivered by the streamed source over the plan, and the wall time from its start."""
    t0 = time.perf_counter()
    streamed = stream_split(manifest, sources, split, workers=workers)
    delivered = sum(len(b) for _, b in streamed.batches(iter(plan(len(streamed), args.batch, args.epochs))))
    return delivered, time.perf_counter() - t0


def save_as_hf(cfg: Any, manifest: Manifest, out: Path) -> tuple[Manifest, float] | None:
    """The manifest's rows as a saved Hugging Face dataset (image bytes inside) and the seconds it took."""
    try:
        import datasets
    except ImportError:
        print("hf: skipped (datasets is not installed: pip install 'modalign[hf]')")
        return None
    datasets.disable_progress_bars()
    t0 = time.perf_counter()
    d, image, text = cfg.data, cfg.column("image"), cfg.column("text")
    records = [
        {
            d.id_column: r[d.id_column],
            d.split_column: r[d.split_column],
            text: r[text],
            image: {"bytes": (manifest.base_dir / r[image]).read_bytes(), "path": r[image]},
        }
        for r in manifest.rows
    ]
    datasets.Dataset.from_list(records).cast_column(image, datasets.Image()).save_to_disk(str(out))
    return read_manifest(out), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.chdir(ROOT)
    cfg = load_config(ROOT / "configs/mdi_icons.yaml")
    manifest = open_manifest(cfg.data.manifest, cfg.data.archive)
    rows = split_rows(manifest, cfg.data.split_column, cfg.data.train_split)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, rows)
    results = []

    t0 = time.perf_counter()
    memory = load_split(manifest, sources, cfg.data.train_split, show_progress=False)
    prep = time.perf_counter() - t0
    delivered = 0
    for _, idx in plan(len(memory), args.batch, args.epochs):
        delivered += len(collate(memory, idx, sources))
    wall = time.perf_counter() - t0
    results.append({"source": "memory", "workers": 0, "samples": delivered, "seconds": wall, "prep_s": prep})
    print(f"memory: {delivered / wall:.0f} samples/s (preprocessing {prep:.1f} s)", flush=True)

    for w in args.workers:
        delivered, wall = streamed_run(manifest, sources, cfg.data.train_split, w, args)
        results.append({"source": "stream", "workers": w, "samples": delivered, "seconds": wall})
        print(f"stream x{w}: {delivered / wall:.0f} samples/s", flush=True)

    with tempfile.TemporaryDirectory(prefix="modalign-shards-") as tmp:
        t0 = time.perf_counter()
        packed = pack_manifest(manifest, Path(tmp) / "shards", shard_size=500)
        pack_s = time.perf_counter() - t0
        for w in args.workers:
            t0 = time.perf_counter()
            reader = ShardBatches(
                packed.shards, sources, args.batch, workers=w, buffer_size=1000, split=cfg.data.train_split
            )
            delivered = 0
            for _ in range(args.epochs):
                delivered += sum(len(b) for b, _ in reader.epoch_batches())
                reader.next_epoch()
            wall = time.perf_counter() - t0
            results.append(
                {"source": "shards", "workers": w, "samples": delivered, "seconds": wall, "pack_s": pack_s}
            )
            print(f"shards x{w}: {delivered / wall:.0f} samples/s (packing {pack_s:.1f} s)", flush=True)

    with tempfile.TemporaryDirectory(prefix="modalign-hf-") as tmp:
        saved = save_as_hf(cfg, manifest, Path(tmp) / "saved")
        if saved is not None:
            hf, save_s = saved
            for w in args.workers:
                delivered, wall = streamed_run(hf, sources, cfg.data.train_split, w, args)
                results.append(
                    {"source": "hf", "workers": w, "samples": delivered, "seconds": wall, "save_s": save_s}
                )
                print(f"hf x{w}: {delivered / wall:.0f} samples/s (saving {save_s:.1f} s)", flush=True)

    base = results[0]["samples"] / results[0]["seconds"]
    print(f"\nbatches of {args.batch}, {args.epochs} epochs of the icon training split ({len(rows)} rows)\n")
    print(
        f"{'source':<8} {'workers':>7} {'samples':>8} {'seconds':>8} {'samples/s':>10} {'x memory':>9}  note"
    )
    for r in results:
        rate = r["samples"] / r["seconds"]
        note = f"preprocess {r['prep_s']:.1f} s" if "prep_s" in r else ""
        note = f"pack {r['pack_s']:.1f} s (once)" if "pack_s" in r else note
        note = f"save_to_disk {r['save_s']:.1f} s (once)" if "save_s" in r else note
        print(
            f"{r['source']:<8} {r['workers']:>7} {r['samples']:>8} {r['seconds']:>8.1f} {rate:>10.0f} "
            f"{rate / base:>9.2f}  {note}"
        )
    if args.json:
        args.json.write_text(json.dumps({"batch": args.batch, "epochs": args.epochs, "runs": results}))


if __name__ == "__main__":
    main()
