"""MultiModN vs concat fusion when missingness depends on the label and changes at test time.

    python benchmarks/mnar.py                  # prints the table (a few minutes on 2 cores)
    python benchmarks/mnar.py --json out.json  # also writes every figure as one JSON object

Data: scikit-learn's breast cancer set as three 10-feature "modalities" (mean, error, worst),
stratified 70/30 split. Training missingness is missing-not-at-random: each modality of a row is
dropped with probability ``--p-high`` (default 0.6) if the tumour is benign (y = 1) and ``--p-low``
(0.05) if malignant, so "modalities are missing" is itself a strong cue for "benign". Test
scenarios: the same pattern (``mnar_same``), no missingness (``complete``), MCAR at the average
training rate (``mcar``) and the flipped pattern (``mnar_flipped``: high drop rate for malignant).

MultiModN's claim (Swamy et al. 2023, §5): a skipped modality leaves the state unchanged, so
missingness itself carries no signal and sequential fusion degrades gracefully when the pattern
changes, while parallel fusion (concat with a learned missing embedding, equivalent to zero
imputation plus a missingness indicator) learns the shortcut and collapses.

Both models are trained as ``modalign train`` trains a config (``run_training`` on an in-memory
manifest whose dropped modalities are null): raw standardised features (``identity`` encoder,
``fusion.input: features``), Adam, mini-batches of 32. A training row that loses all three
modalities has nothing to learn from and is skipped by the data loader (counted in the report).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import modalign
from modalign.config import load_config
from modalign.data.manifest import Manifest
from modalign.evaluation.prediction import accuracy, binary_auroc, macro_f1
from modalign.evaluation.robustness import label_dependent_missingness
from modalign.workflows.train import run_training

GROUPS = {"mean": slice(0, 10), "error": slice(10, 20), "worst": slice(20, 30)}
FUSION = {
    "multimodn": {"name": "multimodn", "params": {"state_dim": 32, "hidden": [32], "shuffle": True}},
    "concat": {"name": "concat", "params": {"hidden": 32}},
}
EPOCHS, BATCH, LR = 60, 32, 3e-3


def config(fusion: dict[str, Any], n_train: int, seed: int) -> dict[str, Any]:
    """The experiment config of one model (what a user would write in YAML)."""
    modality = {
        "kind": "tabular",
        "encoder": "identity",
        "transform": {"scaling": "standard", "missing_flags": False},
    }
    return {
        "data": {"manifest": "in-memory.jsonl", "val_split": None},
        "modalities": {g: modality for g in GROUPS},
        "model": {"embed_dim": 10, "head": "none"},
        "objectives": [],
        "fusion": {**fusion, "input": "features", "tasks": [{"name": "y", "column": "label"}]},
        "trainer": {
            "max_steps": EPOCHS * (n_train // BATCH),
            "batch_size": BATCH,
            "optimizer": "adam",
            "lr": LR,
            "weight_decay": 0.0,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "warmup_steps": 0,
            "min_lr_ratio": 1.0,
            "grad_clip": None,
            "checkpoint_every": 100000,
            "seed": seed,
        },
        "eval": {"robustness": {"enabled": False, "explain_samples": 0}},
    }


def load(seed: int) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    tr, te = train_test_split(
        np.arange(len(data.target)), test_size=0.3, stratify=data.target, random_state=seed
    )
    x = {g: data.data[:, s] for g, s in GROUPS.items()}
    return (
        {g: v[tr] for g, v in x.items()},
        data.target[tr],
        {g: v[te] for g, v in x.items()},
        data.target[te],
    )


def payloads(x: dict, present: dict) -> dict[str, list]:
    """modality -> per-row feature lists, None where the modality is dropped."""
    return {m: [r.tolist() if p else None for r, p in zip(v, present[m], strict=True)] for m, v in x.items()}


def scores(y: np.ndarray, p1: np.ndarray) -> dict[str, float]:
    pred = (p1 >= 0.5).astype(int)
    return {
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, labels=[0, 1]),
        "auroc": binary_auroc(y == 1, p1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--p-high", type=float, default=0.6, help="drop rate of the favoured class")
    ap.add_argument("--p-low", type=float, default=0.05, help="drop rate of the other class")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    hi, lo = args.p_high, args.p_low
    train_drop = {1: hi, 0: lo}
    scenarios = {
        "mnar_same": {1: hi, 0: lo},
        "complete": {1: 0.0, 0: 0.0},
        "mcar": {1: (hi + lo) / 2, 0: (hi + lo) / 2},
        "mnar_flipped": {1: lo, 0: hi},
    }
    runs: dict[str, dict[str, list]] = {m: {s: [] for s in scenarios} for m in FUSION}
    t0 = time.time()
    for seed in range(args.seeds):
        xtr, ytr, xte, yte = load(seed)
        ones_tr = {m: np.ones(len(ytr), bool) for m in xtr}
        ptr = label_dependent_missingness(ytr, ones_tr, {m: train_drop for m in xtr}, seed=seed)
        cols = payloads(xtr, ptr)
        rows = [
            {"id": str(i), "split": "train", "label": int(ytr[i]), **{m: cols[m][i] for m in GROUPS}}
            for i in range(len(ytr))
        ]
        for name, fusion in FUSION.items():
            cfg = load_config(raw=config(fusion, len(ytr), seed))
            with tempfile.TemporaryDirectory() as out:
                run_training(cfg, out, show_progress=False, manifest=Manifest.from_rows(rows))
                model = modalign.load(Path(out) / "model")
            for sc, drop in scenarios.items():
                ones_te = {m: np.ones(len(yte), bool) for m in xte}
                pte = label_dependent_missingness(yte, ones_te, {m: drop for m in xte}, seed=1000 + seed)
                p1 = model.predict(payloads(xte, pte))["y"][:, 1]
                runs[name][sc].append(scores(yte, p1))
        print(f"  seed {seed} done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)

    summary = {
        name: {
            sc: {
                f"{k}_{stat}": float(getattr(np, stat)([r[k] for r in rs]))
                for k in ("accuracy", "macro_f1", "auroc")
                for stat in ("mean", "std")
            }
            for sc, rs in per.items()
        }
        for name, per in runs.items()
    }
    print(
        f"\nbreast cancer, 3 modalities; train MNAR drop {hi} if benign / {lo} if malignant; "
        f"{args.seeds} seeds, mean ± std"
    )
    print(f"{'test scenario':<16}" + "".join(f"{n + ' acc':>20}{n + ' AUROC':>20}" for n in FUSION))
    for sc in scenarios:
        cells = "".join(
            f"{summary[n][sc]['accuracy_mean']:>12.3f} ± {summary[n][sc]['accuracy_std']:.3f}"
            f"{summary[n][sc]['auroc_mean']:>12.3f} ± {summary[n][sc]['auroc_std']:.3f}"
            for n in FUSION
        )
        print(f"{sc:<16}{cells}")
    if args.json is not None:
        from modalign.io import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "config": {
                    "models": {n: config(f, 0, 0) for n, f in FUSION.items()},
                    "epochs": EPOCHS,
                    "train_drop": train_drop,
                    "scenarios": scenarios,
                },
                "summary": summary,
                "runs": runs,
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
