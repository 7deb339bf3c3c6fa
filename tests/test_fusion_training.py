"""Fusion and prediction tasks through the main pipeline: config -> train -> report -> predict/explain."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import write_jsonl

import modalign
from modalign.config import load_config
from modalign.errors import ConfigError, DataError
from modalign.workflows.train import run_training


def _tabular_manifest(root: Path, n_train: int = 120, n_test: int = 40, bad_label: bool = False) -> Path:
    """Three 4-feature views; the label is the sign of a sum that every view sees part of."""
    rng = np.random.default_rng(0)
    rows: list[dict[str, Any]] = []
    for i in range(n_train + n_test):
        z = rng.standard_normal(3)
        y = int(z.sum() > 0)
        row: dict[str, Any] = {"id": f"r{i}", "label": y, "split": "train" if i < n_train else "test"}
        for k, view in enumerate(("a", "b", "c")):
            x = np.concatenate([[z[k]], 0.3 * rng.standard_normal(3)])
            row[view] = [float(v) for v in x]
        if i % 7 == 1:
            row["b"] = None  # absent modality
        if i % 11 == 2:
            row["c"] = [math.nan] * 4  # all-NaN: counts as absent
        if i % 13 == 3:
            row["a"][1] = math.nan  # one missing feature
        rows.append(row)
    if bad_label:
        rows[-1]["label"] = 7
    root.mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "m.jsonl", rows)
    return root / "m.jsonl"


def _config(manifest: Path, fusion: str = "multimodn", **extra: Any) -> dict[str, Any]:
    view = {"kind": "tabular", "encoder_params": {"hidden": 32, "depth": 1}}
    return {
        "data": {"manifest": str(manifest), "val_split": None, "label_column": "label"},
        "modalities": {"a": view, "b": view, "c": view},
        "model": {"embed_dim": 16},
        "objectives": [],
        "fusion": {"name": fusion, "tasks": [{"name": "y", "column": "label", "classes": [0, 1]}], **extra},
        "trainer": {"max_steps": 60, "batch_size": 32, "lr": 0.01, "warmup_steps": 5, "checkpoint_every": 30},
        "eval": {"robustness": {"mnar_drop": {"a": {0: 0.9}}, "explain_samples": 2}},
    }


def test_multimodn_trains_predicts_and_explains(tmp_path: Path) -> None:
    manifest = _tabular_manifest(tmp_path / "d")
    metrics = run_training(load_config(raw=_config(manifest)), tmp_path / "run", show_progress=False)
    assert metrics["predict/y/accuracy"] > 0.8, metrics
    for key in (
        "predict/y/auroc",
        "predict/y/macro_f1",
        "robustness/subset/a+b+c/y/accuracy",
        "robustness/subset/b/y/accuracy",
        "robustness/mcar/0.9/y/accuracy",
        "robustness/mnar/y/accuracy",
    ):
        assert key in metrics, key
    assert sum(k.startswith("robustness/subset/") and k.endswith("/accuracy") for k in metrics) == 7
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    steps = report["meta"]["explanations"][0]["steps"]
    assert [s["after"] for s in steps][0] is None and len(steps) == 4
    page = (tmp_path / "run" / "report.html").read_text()
    assert "Per-step predictions" in page and "data:image/png;base64," in page and "modality subsets" in page

    model = modalign.load(tmp_path / "run" / "model")
    sample = {"a": [0.5, 0.0, 0.0, 0.0], "b": None, "c": [1.0, 0.1, 0.0, 0.0]}
    exp = model.explain(sample)
    assert [s["evaluated"] for s in exp["steps"]] == [True] + [m != "b" for m in exp["order"]]
    # a skipped step leaves the prediction unchanged
    for prev, step in zip(exp["steps"], exp["steps"][1:]):
        if not step["evaluated"]:
            assert step["y"] == prev["y"]
    probs = model.predict({m: [v] for m, v in sample.items()})["y"]
    # float32 through different batch shapes (and BLAS thread splits): a few ulp apart, so an
    # absolute tolerance too for probabilities near 0, where a relative one cannot hold
    np.testing.assert_allclose(probs[0], exp["steps"][-1]["y"], rtol=1e-5, atol=1e-6)
    # nothing present: the prior (initial-state) prediction, not a crash
    prior = model.predict({"a": [None], "b": [None], "c": [None]})["y"][0]
    np.testing.assert_allclose(prior, exp["steps"][0]["y"], rtol=1e-5, atol=1e-6)
    # round trip: identical predictions after reload
    again = modalign.load(tmp_path / "run" / "model")
    batch = {"a": [[1.0, 0, 0, 0], None], "b": [[0.2, 0, 0, 0], [-1.0, 0, 0, 0]], "c": [None, None]}
    np.testing.assert_array_equal(again.predict(batch)["y"], model.predict(batch)["y"])


@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_parallel_fusions_with_aux_heads_and_contrastive_term(tmp_path: Path, fusion: str) -> None:
    manifest = _tabular_manifest(tmp_path / "d")
    raw = _config(manifest, fusion, aux_heads=True, modality_dropout={"a": 0.2})
    raw["objectives"] = [{"name": "m3co", "weight": 0.1}]
    raw["trainer"]["max_steps"] = 40
    metrics = run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)
    assert metrics["predict/y/accuracy"] > 0.75, metrics
    log = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert {"task/y", "task/aux_a_y", "m3co/loss"} <= set(log[-1])


def test_label_outside_known_classes_names_row_and_column(tmp_path: Path) -> None:
    manifest = _tabular_manifest(tmp_path / "d", bad_label=True)
    with pytest.raises(DataError) as e:
        run_training(load_config(raw=_config(manifest)), tmp_path / "run", show_progress=False)
    assert e.value.row == 159 and e.value.column == "label"


def test_fusion_config_errors_name_the_field(tmp_path: Path) -> None:
    raw = _config(tmp_path / "m.jsonl", modality_dropout={"z": 0.5})
    with pytest.raises(ConfigError, match="fusion.modality_dropout"):
        load_config(raw=raw)
    raw = _config(tmp_path / "m.jsonl")
    raw["fusion"]["name"] = "concatt"
    with pytest.raises(ConfigError, match="did you mean concat"):
        load_config(raw=raw)
    raw = _config(tmp_path / "m.jsonl")
    raw["trainer"].update(accumulation="cached", micro_batch_size=4)
    with pytest.raises(ConfigError, match="accumulation"):
        load_config(raw=raw)
    raw = _config(tmp_path / "m.jsonl")
    raw.pop("fusion")
    raw["objectives"] = [{"name": "affinity_distillation"}]
    raw["model"] = {"teacher": str(tmp_path / "teacher")}
    raw["trainer"].update(accumulation="cached", micro_batch_size=4)
    with pytest.raises(ConfigError, match="teacher"):
        load_config(raw=raw)


def test_model_without_fusion_refuses_predict(dataset: Path, tmp_path: Path) -> None:
    from conftest import tiny_config

    run_training(load_config(raw=tiny_config(dataset, max_steps=2)), tmp_path / "run", show_progress=False)
    model = modalign.load(tmp_path / "run" / "model")
    with pytest.raises(ConfigError, match="fusion"):
        model.predict({"text": ["a circle"]})
    assert torch.is_grad_enabled()


def test_fusion_only_models_skip_retrieval(tmp_path: Path) -> None:
    manifest = _tabular_manifest(tmp_path / "d", n_train=40, n_test=10)
    raw = _config(manifest, "concat")
    raw["trainer"]["max_steps"] = 2
    metrics = run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)
    assert not any(k.startswith("retrieval/") for k in metrics)  # no contrastive objective
    assert modalign.load(tmp_path / "run" / "model").aligned is False


@pytest.mark.parametrize(
    ("encoder", "fusion"), [("timeseries_conv", "attention"), ("timeseries_gru", "concat")]
)
def test_time_series_modality_trains_with_fusion(tmp_path: Path, encoder: str, fusion: str) -> None:
    rng = np.random.default_rng(1)
    rows = []
    for i in range(160):
        y = i % 2
        n = int(rng.integers(8, 20))
        freq = 0.8 if y else 0.2  # the class is the frequency of the series
        series = np.sin(freq * np.arange(n) + rng.uniform(0, 6)) + 0.1 * rng.standard_normal(n)
        rows.append(
            {
                "id": f"t{i}",
                "ts": [float(v) for v in series],
                "label": y,
                "split": "train" if i < 120 else "test",
            }
        )
    rows[5]["ts"] = None
    (tmp_path / "d").mkdir()
    write_jsonl(tmp_path / "d" / "m.jsonl", rows)
    raw = _config(tmp_path / "d" / "m.jsonl", fusion)
    raw["modalities"] = {"ts": {"kind": "timeseries", "encoder": encoder}}
    raw["trainer"].update(max_steps=120, lr=0.003)
    raw["eval"] = {}
    metrics = run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)
    assert metrics["predict/y/accuracy"] > 0.75, metrics  # chance is 0.5
    model = modalign.load(tmp_path / "run" / "model")
    probs = model.predict({"ts": [[0.0, 0.8, 1.0, 0.7, -0.1], None]})["y"]
    assert probs.shape == (2, 2) and np.allclose(probs.sum(1), 1.0)


def test_data_check_reports_labels_outside_the_classes(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from modalign.cli import app

    manifest = _tabular_manifest(tmp_path / "d", n_train=20, n_test=5, bad_label=True)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_config(manifest)))
    result = CliRunner().invoke(app, ["data", "check", str(manifest), "--config", str(cfg)])
    assert result.exit_code == 1, result.output
    assert "row 24, column 'label'" in result.output and "1 problem(s)" in result.output
