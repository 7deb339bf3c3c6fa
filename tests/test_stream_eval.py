"""Streamed validation and evaluation: the same metrics as the in-memory path, no split in memory.

With ``data.source: stream`` the validation loss during training, the test report after it and
``modalign eval`` read their split through DataLoader workers and keep only embeddings; the oracle
is the in-memory run of the same config (identical batches, so identical numbers up to float32).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_config, write_dataset

import modalign.workflows.evaluate as evaluate_workflow
import modalign.workflows.train as train_workflow
from modalign.config import load_config
from modalign.data.sources.stream import StreamedSamples
from modalign.errors import ConfigError
from modalign.workflows.evaluate import run_eval
from modalign.workflows.train import run_training

FUSION_VIEW = {"kind": "tabular", "encoder_params": {"hidden": 16, "depth": 1}}


def config(manifest: Path, source: str, **raw: Any) -> Any:
    cfg = tiny_config(manifest, max_steps=8, val_every=4)
    cfg["data"].update({"source": source, "workers": 1})
    return load_config(raw={**cfg, **raw})


def numbers(report: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in report.items() if isinstance(v, (int, float))}


def assert_close(a: dict[str, float], b: dict[str, float], tol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for k in a:
        same_nan = math.isnan(a[k]) and math.isnan(b[k])  # e.g. top-5 accuracy of 4 classes
        assert same_nan or math.isclose(a[k], b[k], rel_tol=tol, abs_tol=tol), (k, a[k], b[k])


def no_memory_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail if a validation/test/eval split is preprocessed into memory (the streamed path must not)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a split was loaded into memory")

    monkeypatch.setattr(train_workflow, "load_split", refuse)
    monkeypatch.setattr(evaluate_workflow, "load_split", refuse)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    manifest = write_dataset(root, {"train": 32, "val": 20, "test": 24})
    (root / "images" / "60.png").write_bytes(b"not a png")  # a test row that fails to load
    (root / "images" / "40.png").write_bytes(b"not a png")  # a validation row (9th of 20) too
    return manifest


@pytest.fixture(scope="module")
def memory_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("memory") / "run"
    run_training(config(data, "memory"), out, show_progress=False)
    return out


def log(run: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_streamed_validation_and_test_report_equal_the_in_memory_ones(
    data: Path, memory_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[int] = []
    loaded = StreamedSamples._loaded

    def counted(self: StreamedSamples, *args: Any) -> Any:
        validated.append(len(self))
        return loaded(self, *args)

    monkeypatch.setattr(StreamedSamples, "_loaded", counted)
    no_memory_loading(monkeypatch)
    run_training(config(data, "stream"), tmp_path / "run", show_progress=False)
    assert 20 in validated and 24 in validated  # the val and test splits went through the stream
    val = [(r["step"], r["val/loss"]) for r in log(tmp_path / "run") if "val/loss" in r]
    expected = [(r["step"], r["val/loss"]) for r in log(memory_run) if "val/loss" in r]
    # the validation row that fails to load is left out of the batches (batch of 16 of the 19 others)
    assert len(val) == 2 and val == expected
    a, b = (json.loads((r / "report.json").read_text()) for r in (memory_run, tmp_path / "run"))
    assert a["meta"]["n_test"] == b["meta"]["n_test"] == 23  # the broken image's row left out
    assert b["data/skipped/test/bad_image"] == 1.0
    assert a["data/skipped/val/bad_image"] == b["data/skipped/val/bad_image"] == 1.0
    assert_close(numbers(a), numbers(b))
    assert any(k.startswith("zeroshot/") for k in b) and any(k.startswith("retrieval/") for k in b)


def test_modalign_eval_streamed_equals_in_memory(
    memory_run: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings: dict[str, Any] = dict(match_on="label", probe=True, show=False)
    memory = run_eval(memory_run / "model", data, source="memory", out_dir=tmp_path / "m", **settings)
    no_memory_loading(monkeypatch)
    streamed = run_eval(
        memory_run / "model", data, source="stream", workers=2, out_dir=tmp_path / "s", **settings
    )
    assert any(k.startswith("linear_probe/") for k in memory)
    assert memory.get("data/skipped/test/bad_image") == 1.0
    assert_close(memory, streamed)
    with pytest.raises(ConfigError, match="--source memory"):
        run_eval(memory_run / "model", data, source="stream", corruptions=True, show=False)


def test_a_run_that_streamed_is_evaluated_streamed_by_default(
    memory_run: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modalign.workflows.evaluate import eval_streams

    assert not eval_streams(memory_run / "model", None, 10**6)  # the run's data.source: memory
    assert eval_streams(memory_run / "model", "stream", 1)
    (tmp_path / "run").mkdir()
    cfg = (memory_run / "config.yaml").read_text().replace("source: memory", "source: auto")
    (tmp_path / "run" / "config.yaml").write_text(cfg.replace("stream_above: 50000", "stream_above: 10"))
    assert eval_streams(tmp_path / "run" / "model", None, 11) and not eval_streams(
        tmp_path / "run" / "model", None, 10
    )


def test_streamed_fusion_on_features_equals_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = []
    for i in range(96):
        y = i % 2
        rows.append(
            {
                "id": f"r{i}",
                "split": "train" if i < 64 else "test",
                "label": y,
                "a": [y + 0.1 * (i % 5), 0.2 * (i % 3)],
                "b": None if i % 7 == 0 else [1 - y, 0.3 * (i % 4)],
            }
        )
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    raw: dict[str, Any] = {
        "data": {"manifest": str(tmp_path / "m.jsonl"), "val_split": None, "label_column": "label"},
        "modalities": {"a": FUSION_VIEW, "b": FUSION_VIEW},
        "model": {"embed_dim": 8},
        "objectives": [],
        "fusion": {"name": "concat", "input": "features", "tasks": [{"name": "y", "column": "label"}]},
        "trainer": {"max_steps": 6, "batch_size": 16, "checkpoint_every": 6},
    }
    reports = []
    for source in ("memory", "stream"):
        if source == "stream":
            no_memory_loading(monkeypatch)
        raw["data"] = {**raw["data"], "source": source, "workers": 0}
        reports.append(run_training(load_config(raw=raw), tmp_path / source, show_progress=False))
    assert any(k.startswith("predict/y/") for k in reports[0])
    assert_close(*reports)
