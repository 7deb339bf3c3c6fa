"""The M3CoL recipe run from a config (MultimodalModel + Trainer) equals its plain-torch restatement."""

from __future__ import annotations

import json

import numpy as np
import pytest
from reference_m3col import train_reference

import modalign
from modalign.config import load_config
from modalign.data.manifest import Manifest
from modalign.workflows.train import run_training

DIMS = {"a": 6, "b": 5, "c": 4}


def _data(seed: int = 0) -> tuple[dict, np.ndarray, dict, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_train, n_test = 40, 16
    y = rng.integers(0, 2, n_train + n_test)
    x = {
        m: rng.normal(size=(len(y), d)) + 0.8 * y[:, None] * (i + 1) / 3
        for i, (m, d) in enumerate(DIMS.items())
    }
    return (
        {m: v[:n_train] for m, v in x.items()},
        y[:n_train],
        {m: v[n_train:] for m, v in x.items()},
        y[n_train:],
    )


def _rows(xtr: dict, ytr: np.ndarray, xte: dict, yte: np.ndarray) -> list[dict]:
    rows = []
    for split, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        for i in range(len(y)):
            row = {"id": f"{split}-{i}", "split": split, "label": int(y[i])}
            rows.append(row | {m: x[m][i].tolist() for m in DIMS})
    return rows


RECIPE = dict(
    hidden=16,
    feature_dim=8,
    dropout=0.5,
    head_hidden=8,
    head_depth=2,
    head_dropout=0.5,
    lam=0.1,
    mixup_fraction=0.33,
    steps=12,
    lr=2e-3,
    weight_decay=1e-4,
    ema_decay=0.9,
    seed=3,
)


def _config(r: dict) -> dict:
    encoder = {"hidden": r["hidden"], "output_dim": r["feature_dim"], "dropout": r["dropout"]}
    modality = {
        "kind": "tabular",
        "encoder": "mlp",
        "encoder_params": encoder,
        "transform": {"scaling": "minmax", "missing_flags": False},
    }
    return {
        "data": {"manifest": "in-memory.jsonl", "val_split": None},
        "modalities": {m: modality for m in DIMS},
        "model": {"embed_dim": r["feature_dim"], "head": "none"},
        "objectives": [
            {"name": "m3co", "weight": r["lam"], "params": {"mixup_fraction": r["mixup_fraction"]}}
        ],
        "fusion": {
            "name": "concat",
            "input": "features",
            "tasks": [{"name": "y", "column": "label"}],
            "head_hidden": r["head_hidden"],
            "head_depth": r["head_depth"],
            "head_dropout": r["head_dropout"],
            "aux_heads": True,
            "prediction": "ensemble",
        },
        "trainer": {
            "max_steps": r["steps"],
            "batch_size": "full",
            "optimizer": "adam",
            "lr": r["lr"],
            "weight_decay": r["weight_decay"],
            "betas": [0.9, 0.999],
            "eps": 1e-8,
            "warmup_steps": 0,
            "min_lr_ratio": 1.0,
            "grad_clip": None,
            "ema_decay": r["ema_decay"],
            "seed": r["seed"],
        },
        "eval": {"robustness": {"enabled": False}},
    }


@pytest.mark.parametrize("recipe", [RECIPE, {**RECIPE, "head_depth": 1, "ema_decay": 0.0, "seed": 7}])
def test_config_path_reproduces_the_m3col_recipe(tmp_path, recipe):
    xtr, ytr, xte, yte = _data()
    ref_history, ref_probs = train_reference(xtr, ytr, xte, **recipe)
    cfg = load_config(raw=_config(recipe))
    run_training(cfg, tmp_path, show_progress=False, manifest=Manifest.from_rows(_rows(xtr, ytr, xte, yte)))

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    history = [json.loads(ln)["loss"] for ln in lines]
    assert len(history) == recipe["steps"]
    # Both phases of the contrastive schedule ran: M3Co on steps 0-3 (s / 12 < 0.33), then Soft-CLIP.
    assert [json.loads(ln)["m3co/mixup"] for ln in lines] == [1.0] * 4 + [0.0] * 8
    np.testing.assert_allclose(history, ref_history, rtol=1e-4, atol=1e-6)

    model = modalign.load(tmp_path / "model")
    probs = model.predict({m: [row.tolist() for row in xte[m]] for m in DIMS})["y"]
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-4, atol=1e-6)
