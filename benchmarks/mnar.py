"""MultiModN vs concat fusion when missingness depends on the label and changes at test time.

    python benchmarks/mnar.py                  # prints the table (about a minute on 2 cores)
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
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from modalign.evaluation.prediction import accuracy, binary_auroc, macro_f1
from modalign.evaluation.robustness import label_dependent_missingness
from modalign.tasks import TaskSpec
from modalign.fusion.predictor import FusionPredictor

MODELS = {
    "multimodn": dict(
        fusion="multimodn",
        fusion_kwargs=dict(state_dim=32, hidden=(32,), shuffle=True),
        encoder="identity",
        normalize="standard",
    ),
    "concat": dict(
        fusion="concat",
        fusion_kwargs=dict(hidden=32),
        encoder="identity",
        normalize="standard",
    ),
}
FIT = dict(epochs=60, lr=3e-3, batch_size=32)


def load(seed: int) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    data = load_breast_cancer()
    tr, te = train_test_split(
        np.arange(len(data.target)), test_size=0.3, stratify=data.target, random_state=seed
    )
    groups = {"mean": slice(0, 10), "error": slice(10, 20), "worst": slice(20, 30)}
    x = {g: data.data[:, s] for g, s in groups.items()}
    return (
        {g: v[tr] for g, v in x.items()},
        data.target[tr],
        {g: v[te] for g, v in x.items()},
        data.target[te],
    )


def scores(y: np.ndarray, p1: np.ndarray) -> dict[str, float]:
    pred = (p1 >= 0.5).astype(int)
    return {
        "accuracy": accuracy(y, pred),
        "macro_f1": macro_f1(y, pred, labels=[0, 1]),
        "auroc": binary_auroc(y == 1, p1),
    }


def with_missing(x: dict, present: dict) -> dict:
    """NaN rows where absent (NaN counts as missing in every fusion module)."""
    return {m: np.where(present[m][:, None], v, np.nan) for m, v in x.items()}


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
    runs: dict[str, dict[str, list]] = {m: {s: [] for s in scenarios} for m in MODELS}
    t0 = time.time()
    for seed in range(args.seeds):
        xtr, ytr, xte, yte = load(seed)
        ones_tr = {m: np.ones(len(ytr), bool) for m in xtr}
        ptr = label_dependent_missingness(ytr, ones_tr, {m: train_drop for m in xtr}, seed=seed)
        for name, cfg in MODELS.items():
            torch.manual_seed(seed)
            model = FusionPredictor(
                {m: v.shape[1] for m, v in xtr.items()}, [TaskSpec("y", classes=(0, 1))], **cfg
            )
            model.fit(with_missing(xtr, ptr), {"y": list(ytr)}, seed=seed, **FIT)
            for sc, drop in scenarios.items():
                ones_te = {m: np.ones(len(yte), bool) for m in xte}
                pte = label_dependent_missingness(yte, ones_te, {m: drop for m in xte}, seed=1000 + seed)
                runs[name][sc].append(scores(yte, model.predict(with_missing(xte, pte))["y"][:, 1]))
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
    print(f"{'test scenario':<16}" + "".join(f"{n + ' acc':>20}{n + ' AUROC':>20}" for n in MODELS))
    for sc in scenarios:
        cells = "".join(
            f"{summary[n][sc]['accuracy_mean']:>12.3f} ± {summary[n][sc]['accuracy_std']:.3f}"
            f"{summary[n][sc]['auroc_mean']:>12.3f} ± {summary[n][sc]['auroc_std']:.3f}"
            for n in MODELS
        )
        print(f"{sc:<16}{cells}")
    if args.json is not None:
        from modalign.io import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "config": {
                    "models": MODELS,
                    "fit": FIT,
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
