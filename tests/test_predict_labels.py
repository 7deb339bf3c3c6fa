"""``predict`` keeps returning probabilities; ``class_names`` and ``predict_labels`` name the classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import modalign
from modalign.config import load_config
from modalign.data.dataset import fit_transforms
from modalign.data.manifest import Manifest
from modalign.errors import ConfigError
from modalign.workflows.build import build_fusion_spec, build_model, build_sources

ANIMALS = ["zebra", "cat", "owl"]


def _model(tmp_path: Path) -> modalign.MultimodalModel:
    """An untrained tabular model with a multiclass, a multilabel and a regression task, saved and
    loaded back (the classes must survive the round trip)."""
    rows = [
        {
            "id": str(i),
            "x": [float(i % 5), float(i % 3)],
            "animal": ANIMALS[i % 3],
            "tags": [["a"], ["b"], ["a", "c"]][i % 3],
            "size": 0.5 * i,
            "split": "train",
        }
        for i in range(30)
    ]
    raw = {
        "data": {"manifest": "unused.jsonl"},
        "modalities": {"x": {"kind": "tabular"}},
        "model": {"embed_dim": 8},
        "objectives": [],
        "fusion": {
            "name": "concat",
            "tasks": [
                {"name": "animal"},
                {"name": "tags", "kind": "multilabel"},
                {"name": "size", "kind": "regression"},
            ],
        },
    }
    cfg = load_config(raw=raw)
    manifest = Manifest.from_rows(rows)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, range(30))
    labels = {c: [r[c] for r in rows] for c in ("animal", "tags", "size")}
    torch.manual_seed(0)
    build_model(cfg, sources, build_fusion_spec(cfg, labels)).save(tmp_path / "m")
    return modalign.load(tmp_path / "m")


def test_class_names_and_decoded_predictions(tmp_path: Path) -> None:
    model = _model(tmp_path)
    assert model.class_names == {"animal": sorted(ANIMALS), "tags": ["a", "b", "c"], "size": None}
    inputs = {"x": [[0.0, 1.0], [4.0, 2.0], None, [2.0, 0.0]]}  # None: absent (the prior)
    probs = model.predict(inputs)  # the old return: task -> array
    assert set(probs) == {"animal", "tags", "size"} and probs["animal"].shape == (4, 3)
    labels = model.predict_labels(inputs, threshold=0.5)
    # restated: the argmax column's class, the classes at or above the threshold, the value
    classes = model.class_names
    assert labels["animal"] == [classes["animal"][int(np.argmax(p))] for p in probs["animal"]]
    assert labels["tags"] == [[c for c, p in zip(classes["tags"], row) if p >= 0.5] for row in probs["tags"]]
    assert labels["size"] == pytest.approx(probs["size"][:, 0].tolist())
    assert all(isinstance(v, str) for v in labels["animal"])
    everything = model.predict_labels(inputs, threshold=0.0)["tags"]
    assert everything == [["a", "b", "c"]] * 4


def test_a_model_without_tasks_says_so() -> None:
    raw = {
        "data": {"manifest": "unused.jsonl"},
        "modalities": {"x": {"kind": "tabular"}, "y": {"kind": "tabular"}},
    }
    cfg = load_config(raw=raw)
    sources = build_sources(cfg)
    fit_transforms(Manifest.from_rows([{"x": [1.0], "y": [2.0]}]), sources, [0])
    model = build_model(cfg, sources)
    assert model.class_names == {}
    with pytest.raises(ConfigError, match="no fusion"):
        model.predict_labels({"x": [[1.0]]})
