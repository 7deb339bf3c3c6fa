"""Frozen pretrained towers on the icon set: ridge map vs trained projectors vs tuning vs from scratch.

Run: ``python benchmarks/frozen_projectors.py`` (about 25 minutes on a busy 2-core CPU, most of it
computing the frozen features once and training (c); ``--json PATH`` writes the figures).
Protocol, fixed before looking at results: the bundled icon set, its train/val/test splits, test
text->image R@1/5/10 with the image of the same id as the only positive (``eval.match_on: null``).

(a) Ridge: closed-form ``W = (X^T X + lam I)^-1 X^T Y`` from the frozen EfficientNet-Lite0 image
    features X (1280-d) to the frozen MiniLM text features Y (384-d) of the training split; ``lam``
    picked from a grid by validation R@10; test texts then retrieve images by cosine of Y and X W.
(b) ``configs/icons_frozen.yaml`` unchanged: both towers frozen, MLP projectors trained (CLIP loss).
(c) (b) with the text tower's last transformer block tuned too (``trainable: {last_n_blocks: 1}``,
    ``lr_scale: 0.1``), ``--tune-steps`` steps (the text encoder runs in every step).
(d) ``configs/mdi_icons.yaml`` unchanged: both towers trained from scratch.
Cache: with a fresh cache directory, the wall time of (b)'s first epoch (loading, computing the
frozen features once, the epoch's projector steps) vs its second epoch (projector steps only),
and the first epoch of a second run that finds the features on disk.

``--train-rows N --val-rows M`` use the first N training / M validation icons only (every test
icon is kept; (d) trains on the same subset), and ``--cache DIR`` reuses a cache directory (the
table then says how many features were on disk before): for machines too slow to embed all
7,188 icons at 224 px in one sitting.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _icons import ROOT, icon_rows, table, write_json

from modalign.config import load_config
from modalign.data.dataset import split_rows
from modalign.data.loading import load_split, open_manifest
from modalign.evaluation import retrieval_metrics
from modalign.training.feature_cache import cache_frozen_features
from modalign.workflows.build import apply_tuning, build_model, build_sources
from modalign.workflows.train import run_training

KS = (1, 5, 10)


def _recalls(report: dict[str, float]) -> list[float]:
    return [report[f"retrieval/text->image/R@{k}"] for k in KS]


def timed_run(cfg: Any, out: Path, steps_per_epoch: int) -> tuple[dict[str, float], dict[str, float]]:
    """Train; returns the report and the wall times of the first and second epochs."""
    marks: dict[int, float] = {}
    start = time.perf_counter()

    def on_step(step: int, metrics: dict[str, float]) -> None:
        if step in (steps_per_epoch, 2 * steps_per_epoch):
            marks[step] = time.perf_counter()

    report = run_training(cfg, out, show_progress=False, on_step=on_step)
    times = {
        "epoch1_s": marks[steps_per_epoch] - start,
        "epoch2_s": marks[2 * steps_per_epoch] - marks[steps_per_epoch],
        "total_s": time.perf_counter() - start,
    }
    return report, times


def frozen_features(cfg: Any) -> dict[str, dict[str, np.ndarray]]:
    """split -> {"image": (N, 1280), "text": (N, 384)} frozen features, read from the cache."""
    d = cfg.data
    manifest = open_manifest(d.manifest, d.archive)
    sources = build_sources(cfg)
    model = build_model(cfg, sources)
    apply_tuning(cfg, model)
    rows = [i for s in ("train", "val", "test") for i in split_rows(manifest, d.split_column, s)]
    cached = cache_frozen_features(model, manifest, model.sources(), rows, cfg.model.feature_cache_dir)
    out = {}
    for split in ("train", "val", "test"):
        samples = load_split(manifest, cached, split, show_progress=False)
        keep = [
            i for i in range(len(samples)) if all(samples.data[m][i] is not None for m in ("image", "text"))
        ]
        out[split] = {m: torch.stack([samples.data[m][i] for i in keep]).numpy() for m in ("image", "text")}
        out[split]["ids"] = np.array([samples.ids[i] for i in keep])
    return out


def ridge_recalls(f: dict[str, dict[str, np.ndarray]]) -> tuple[list[float], float]:
    """(a): test text->image R@k of the ridge map with lam chosen on validation R@10."""
    x, y = f["train"]["image"].astype(np.float64), f["train"]["text"].astype(np.float64)
    gram, xty = x.T @ x, x.T @ y

    def recalls(split: str, lam: float) -> dict[str, float]:
        w = np.linalg.solve(gram + lam * np.eye(len(gram)), xty)  # (1280, 384)
        mapped = torch.nn.functional.normalize(torch.from_numpy(f[split]["image"] @ w).float(), dim=-1)
        texts = torch.nn.functional.normalize(torch.from_numpy(f[split]["text"]).float(), dim=-1)
        ids = f[split]["ids"]
        positives = [np.flatnonzero(ids == q).tolist() for q in ids]  # the image of the same id
        return retrieval_metrics(texts.numpy(), mapped.numpy(), positives, KS)

    grid = [10.0**k for k in range(-3, 5)]
    best = max(grid, key=lambda lam: recalls("val", lam)["R@10"])
    test = recalls("test", best)
    return [test[f"R@{k}"] for k in KS], best


def subset_manifest(work: Path, train_rows: int | None, val_rows: int | None) -> Path:
    """The icon manifest with only the first training / validation rows (every test row kept)."""
    rows, limits, seen = [], {"train": train_rows, "val": val_rows}, {"train": 0, "val": 0}
    for r in icon_rows():
        limit = limits.get(r["split"])
        if limit is not None:
            if seen[r["split"]] >= limit:
                continue
            seen[r["split"]] += 1
        rows.append({**r, "image": str(ROOT / "data/mdi_icons" / r["image"])})
    path = work / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _cached(cache: Path) -> int:
    """Features already in the cache directory (shards of every namespace)."""
    from safetensors import safe_open

    total = 0
    for shard in cache.glob("*/*.safetensors"):
        with safe_open(str(shard), "pt") as f:
            total += len(list(f.keys()))
    return total


def tuned_row(sets: list[str], steps: int, work: Path) -> list[Any]:
    """(c): icons_frozen.yaml with the text tower's last block tuned too."""
    more = ["modalities.text.trainable={last_n_blocks: 1}", "modalities.text.lr_scale=0.1"]
    tuned = load_config(ROOT / "configs/icons_frozen.yaml", [*sets, *more, f"trainer.max_steps={steps}"])
    t0 = time.perf_counter()
    report = run_training(tuned, work / "c", show_progress=False)
    return [f"(c) + text last block ({steps} steps)", *_recalls(report), time.perf_counter() - t0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tune-steps", type=int, default=300)
    parser.add_argument("--train-rows", type=int, default=None, help="first N training rows only")
    parser.add_argument("--val-rows", type=int, default=None, help="first N validation rows only")
    parser.add_argument("--cache", default=None, help="feature cache directory (default: a fresh one)")
    parser.add_argument("--parts", default="abcd", help="which of (a)-(d) to run, e.g. ab")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="frozen_projectors_"))
    cache = Path(args.cache) if args.cache is not None else work / "cache"  # fresh: epoch 1 pays
    sets = [f"model.feature_cache_dir={cache}", f"trainer.threads={args.threads}"]
    if args.train_rows is not None or args.val_rows is not None:
        sets.append(f"data.manifest={subset_manifest(work, args.train_rows, args.val_rows)}")
    cached_before = _cached(cache)
    frozen = load_config(ROOT / "configs/icons_frozen.yaml", sets)
    n_train = len(split_rows(open_manifest(frozen.data.manifest, frozen.data.archive), "split", "train"))
    per_epoch = max(1, n_train // int(frozen.trainer.batch_size))
    rows, figures = [], {}

    report_b, cold = timed_run(frozen, work / "b", per_epoch)
    _, warm = timed_run(frozen, work / "b_warm", per_epoch)
    ridge, lam = ridge_recalls(frozen_features(frozen))
    rows.append(["(a) ridge map, frozen features", *ridge, 0.0])
    rows.append(["(b) frozen towers + projectors", *_recalls(report_b), cold["total_s"]])
    if "c" in args.parts:
        rows.append(tuned_row(sets, args.tune_steps, work))
    if "d" in args.parts:
        scratch = load_config(ROOT / "configs/mdi_icons.yaml", [s for s in sets if "feature_cache" not in s])
        t0 = time.perf_counter()
        report_d = run_training(scratch, work / "d", show_progress=False)
        rows.append(["(d) from scratch (mdi_icons.yaml)", *_recalls(report_d), time.perf_counter() - t0])

    print("icon test split, text->image retrieval (positive = same id)")
    print(table(["method", "R@1", "R@5", "R@10", "train s"], rows))
    gain = rows[1][3] - rows[0][3]
    print(f"(b) - (a) R@10: {100 * gain:+.1f} points (target >= +5); ridge lambda {lam:g} (validation R@10)")
    print()
    print(f"frozen-feature cache, {per_epoch} steps per epoch; {cached_before} features were on disk before")
    cache_rows = [
        ["epoch 1, empty cache (features computed)", cold["epoch1_s"]],
        ["epoch 2 (projectors only)", cold["epoch2_s"]],
        ["epoch 1 of a second run (cache on disk)", warm["epoch1_s"]],
    ]
    print(table(["", "seconds"], cache_rows))
    speedup = cold["epoch1_s"] / max(cold["epoch2_s"], 1e-9)
    print(f"epoch 1 / epoch 2: {speedup:.1f}x (target >= 5x)")
    figures = {
        "recall_text_to_image": {r[0]: dict(zip([f"R@{k}" for k in KS], r[1:4])) for r in rows},
        "train_seconds": {r[0]: r[4] for r in rows},
        "ridge_lambda": lam,
        "b_minus_a_R@10": gain,
        "cache": {
            "cold": cold,
            "warm": warm,
            "steps_per_epoch": per_epoch,
            "epoch1_over_epoch2": speedup,
            "features_on_disk_before": cached_before,
        },
        "args": vars(args),
    }
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
