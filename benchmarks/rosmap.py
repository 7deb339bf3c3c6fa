"""ROSMAP (3 omics, AD vs NC) through the CLI's path: configs/rosmap.yaml and candidate overrides.

    python benchmarks/rosmap.py                    # CV selection, then the test split (~15-25 min, 2 cores)
    python benchmarks/rosmap.py --json out.json    # also writes every figure as one JSON object
    python benchmarks/rosmap.py --cv-repeats 1 --seeds 2 --workers 1   # a quicker, weaker run

Every model is trained exactly as ``modalign train configs/rosmap.yaml --set ...`` would train it
(``run_training`` on the bundled manifest; CV folds are in-memory manifests of training rows), then
predicts the held-out rows with ``modalign.load(...).predict``.

Protocol, fixed before this version's test-split runs:

1. Candidates: ``configs/rosmap.yaml`` (the M3CoL recipe) and the overrides in ``CANDIDATES``.
2. Model selection on the 245 training samples only: stratified 5-fold CV repeated ``--cv-repeats``
   (5) times, the same folds for every candidate. Rule: highest mean CV accuracy, ties by AUROC.
3. Every candidate then runs once on the fixed MOGONET test split (106 samples), seeds 0..N-1
   (mean ± std); the selected one is marked. ``<selected>_seed_ensemble`` averages the selected
   recipe's N seed models' probabilities (no extra training).
4. ``logreg`` / ``random_forest`` (scikit-learn on the concatenated standardised features) and
   MOGONET's published figures on this split (Wang et al. 2021, Table 2) for reference.

F1 is the binary F1 of the AD class, as MOGONET reports it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "rosmap.yaml"
MOGONET = {"accuracy": 0.815, "f1": 0.821, "auroc": 0.874}
OMICS = ("mrna", "meth", "mirna")
# Overrides of configs/rosmap.yaml (``--set`` syntax), fixed before any run of this protocol.
CANDIDATES: dict[str, list[str]] = {
    "m3col": [],
    "m3col_standard_ensemble": [
        *(f"modalities.{m}.transform.scaling=standard" for m in OMICS),
        "fusion.prediction=ensemble",
    ],
    "m3col_ema": ["trainer.ema_decay=0.99"],
    "m3col_standard_ensemble_ema": [
        *(f"modalities.{m}.transform.scaling=standard" for m in OMICS),
        "fusion.prediction=ensemble",
        "trainer.ema_decay=0.99",
    ],
    "multimodn": [
        "fusion.name=multimodn",
        "fusion.params={state_dim: 64, hidden: [64], dropout: 0.3, shuffle: true}",
        "fusion.head_hidden=null",
        "fusion.head_dropout=0.0",
    ],
}
QUIET = ["eval.robustness.enabled=false", "trainer.checkpoint_every=100000"]


def load_rows() -> list[dict[str, Any]]:
    """The bundled manifest's rows (extracted from data/rosmap.tar.gz on first use)."""
    from modalign.config import load_config
    from modalign.data.loading import open_manifest

    cfg = load_config(CONFIG)
    return open_manifest(ROOT / cfg.data.manifest, ROOT / cfg.data.archive).rows


def train_predict(job: tuple[list[str], list[dict[str, Any]], int]) -> np.ndarray:
    """P(AD) of the ``split == "test"`` rows for a model trained on the ``train`` rows."""
    import torch

    import modalign
    from modalign.config import apply_override, load_config
    from modalign.data.manifest import Manifest
    from modalign.workflows.train import run_training

    overrides, rows, seed = job
    torch.set_num_threads(1)  # small full-batch models: one thread each, one process per core
    raw = yaml.safe_load(CONFIG.read_text())
    for assignment in [*overrides, *QUIET, f"trainer.seed={seed}"]:
        apply_override(raw, assignment)
    for key in ("manifest", "archive"):
        raw["data"][key] = str(ROOT / raw["data"][key])
    cfg = load_config(raw=raw)
    test = [r for r in rows if r["split"] == "test"]
    with tempfile.TemporaryDirectory() as out:
        run_training(cfg, out, show_progress=False, manifest=Manifest.from_rows(rows, ROOT))
        model = modalign.load(Path(out) / "model")
        probs = model.predict({m: [r[m] for r in test] for m in OMICS})["diagnosis"]
    return probs[:, list(model.fusion_spec.tasks[0].classes).index(1)]


def scores(y: np.ndarray, p1: np.ndarray) -> dict[str, float]:
    """accuracy, binary F1 of class 1, macro-F1 and AUROC from P(class 1)."""
    from modalign.evaluation.prediction import accuracy, binary_auroc, macro_f1

    pred = (p1 >= 0.5).astype(int)
    return {
        "accuracy": accuracy(y, pred),
        "f1": macro_f1(y == 1, pred == 1, labels=[True]),
        "macro_f1": macro_f1(y, pred, labels=[0, 1]),
        "auroc": binary_auroc(y == 1, p1),
    }


def cv_folds(rows: list[dict[str, Any]], repeats: int) -> list[list[dict[str, Any]]]:
    """Training rows relabelled ``train``/``test`` per fold (stratified 5-fold, ``repeats`` times)."""
    from sklearn.model_selection import StratifiedKFold

    train = [r for r in rows if r["split"] == "train"]
    y = np.array([r["label"] for r in train])
    folds = []
    for rep in range(repeats):
        for _, b in StratifiedKFold(5, shuffle=True, random_state=100 + rep).split(y, y):
            held = set(b.tolist())
            folds.append([{**r, "split": "test" if i in held else "train"} for i, r in enumerate(train)])
    return folds


def labels(rows: list[dict[str, Any]]) -> np.ndarray:
    return np.array([r["label"] for r in rows if r["split"] == "test"])


def summarise(runs: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in runs[0]:
        v = np.array([r[k] for r in runs])
        out[f"{k}_mean"], out[f"{k}_std"] = float(v.mean()), float(v.std())
    return out


def classical(name: str, rows: list[dict[str, Any]], seed: int) -> dict[str, float]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def xy(split: str) -> tuple[np.ndarray, np.ndarray]:
        part = [r for r in rows if r["split"] == split]
        return np.array([sum((r[m] for m in OMICS), []) for r in part]), np.array([r["label"] for r in part])

    (a, ya), (b, yb) = xy("train"), xy("test")
    if name == "logreg":
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    else:
        forest = RandomForestClassifier(n_estimators=500, random_state=seed, n_jobs=1)
        clf = make_pipeline(StandardScaler(), forest)
    clf.fit(a, ya)
    return scores(yb, clf.predict_proba(b)[:, 1])


def print_table(title: str, results: dict[str, dict], mark: str | None, published: bool) -> None:
    print(f"\n{title}")
    w = max(18, 2 + max(len(n) for n in results) + 2)
    print(f"{'model':<{w}}{'accuracy':>16}{'F1':>16}{'AUROC':>16}")
    for name, r in results.items():
        cells = "".join(f"{r[f'{k}_mean']:>9.3f} ± {r[f'{k}_std']:.3f}" for k in ("accuracy", "f1", "auroc"))
        print(f"{name + (' *' if name == mark else ''):<{w}}{cells}")
    if published:
        cells = "".join(f"{MOGONET[k]:>16.3f}" for k in ("accuracy", "f1", "auroc"))
        print(f"{'MOGONET (paper)':<{w}}{cells}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="test-split seeds 0..N-1")
    ap.add_argument("--cv-repeats", type=int, default=5, help="repeats of stratified 5-fold CV")
    ap.add_argument("--workers", type=int, default=2, help="processes (one thread each)")
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    args = ap.parse_args(argv)
    rows = load_rows()
    folds = cv_folds(rows, args.cv_repeats)
    out: dict[str, Any] = {
        "protocol": {
            "config": str(CONFIG.relative_to(ROOT)),
            "candidates": CANDIDATES,
            "cv": f"stratified 5-fold x {args.cv_repeats} on the training split",
            "rule": "highest mean CV accuracy, ties by AUROC",
            "seeds": list(range(args.seeds)),
        }
    }
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        cv: dict[str, dict] = {}
        for name, over in CANDIDATES.items():
            probs = list(pool.map(train_predict, [(over, f, k) for k, f in enumerate(folds)]))
            runs = [scores(labels(f), p) for f, p in zip(folds, probs, strict=True)]
            cv[name] = {**summarise(runs), "runs": runs}
            print(f"  [cv] {name} done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        chosen = max(cv, key=lambda k: (cv[k]["accuracy_mean"], cv[k]["auroc_mean"]))
        y = labels(rows)
        test: dict[str, dict] = {}
        for name, over in CANDIDATES.items():
            probs = list(pool.map(train_predict, [(over, rows, s) for s in range(args.seeds)]))
            runs = [scores(y, p) for p in probs]
            test[name] = {**summarise(runs), "runs": runs}
            if name == chosen:
                ens = scores(y, np.mean(probs, axis=0))
                test[f"{name}_seed_ensemble"] = {
                    **{f"{k}_mean": v for k, v in ens.items()},
                    **{f"{k}_std": 0.0 for k in ens},
                }
            print(f"  [test] {name} done ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
    for name in ("logreg", "random_forest"):
        test[name] = {**summarise([classical(name, rows, s) for s in range(args.seeds)])}
    out.update({"cv": cv, "selected": chosen, "test": test, "mogonet_published": MOGONET})
    out["seconds"] = round(time.time() - t0, 1)
    print_table(
        f"ROSMAP training split only: stratified 5-fold CV x {args.cv_repeats} (model selection; "
        f"rule: highest mean accuracy; * = selected)",
        cv,
        chosen,
        False,
    )
    print_table(
        f"ROSMAP test split (106), {args.seeds} seeds, mean ± std; every candidate shown, * = selected by CV",
        test,
        chosen,
        True,
    )
    if args.json is not None:
        from modalign.io import atomic_write_json

        atomic_write_json(args.json, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
