"""Nested fields: a dotted column reads nested JSON objects (JSONL) and struct columns (Parquet); a
tabular modality takes a whole nested object with its numeric/categorical split inferred."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from conftest import tiny_config, write_dataset

from modalign.config import load_config
from modalign.data.dataset import fit_transforms, split_rows
from modalign.data.loading import load_split
from modalign.data.manifest import cell, read_manifest
from modalign.workflows.build import build_sources
from modalign.workflows.check import check_manifest
from modalign.workflows.train import run_training

CONTINENTS = ["Europe", "Asia", "Africa"]


def _nest(row: dict[str, Any], k: int) -> dict[str, Any]:
    """The synthetic row with its audio inside ``spoken`` and a ``country`` object of mixed types."""
    out = {key: v for key, v in row.items() if key not in ("audio", "extra")}
    out["spoken"] = {"fr": row["audio"], "en": None}
    area = None if k % 7 == 3 else float(10 + 3 * k)
    out["country"] = {"area_km2": area, "continent": CONTINENTS[k % 3], "flag": k % 2 == 0, "tags": ["x"]}
    return out


def _nested_manifest(tmp_path: Path, suffix: str = ".jsonl") -> Path:
    manifest = write_dataset(tmp_path / "data", {"train": 24, "val": 4, "test": 8})
    rows = [_nest(json.loads(line), k) for k, line in enumerate(manifest.read_text().splitlines())]
    if suffix == ".parquet":
        out = manifest.with_suffix(".parquet")
        pq.write_table(pa.Table.from_pylist(rows), out)  # spoken and country become struct columns
        return out
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _config(manifest: Path, **country: Any) -> dict[str, Any]:
    raw = tiny_config(manifest, max_steps=2)
    raw["modalities"]["audio"]["column"] = "spoken.fr"
    raw["modalities"]["country"] = {"kind": "tabular", "transform": country}
    return raw


def test_cell_reads_nested_paths_and_a_literal_dotted_key_wins() -> None:
    row = {"a": {"b": {"c": 1}}, "x.y": "literal", "x": {"y": "nested"}, "s": "text"}
    assert cell(row, "a.b.c") == 1
    assert cell(row, "a.b") == {"c": 1}
    assert cell(row, "x.y") == "literal"
    assert cell(row, "s.t") is None  # a path through a string is absent, not an error
    assert cell(row, "a.z") is None and cell(row, "missing") is None


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_dotted_columns_and_whole_objects_load_as_written(tmp_path: Path, suffix: str) -> None:
    manifest_path = _nested_manifest(tmp_path, suffix)
    cfg = load_config(raw=_config(manifest_path))
    manifest = read_manifest(manifest_path)
    sources = build_sources(cfg)
    train_rows = split_rows(manifest, "split", "train")
    fit_transforms(manifest, sources, train_rows)
    country = next(s for s in sources if s.name == "country").transform
    # inferred from the training values: numbers, then strings/booleans; the list field left out
    assert country.numeric == ("area_km2",)
    assert country.categorical == ("continent", "flag")
    samples = load_split(manifest, sources, "train", show_progress=False)
    assert len(samples) == 24 and not samples.skipped
    assert all(x is not None for x in samples.data["audio"])  # every row's spoken.fr is read
    # the features against a restatement: (x - mean) / std over the present training areas
    areas = [None if k % 7 == 3 else 10.0 + 3 * k for k in range(24)]
    seen = [a for a in areas if a is not None]
    mean = sum(seen) / len(seen)
    std = math.sqrt(sum((a - mean) ** 2 for a in seen) / len(seen))
    continents = {c: i + 1 for i, c in enumerate(sorted(CONTINENTS))}
    flags = {"False": 1, "True": 2}
    for k, x in enumerate(samples.data["country"]):
        assert x is not None
        a = areas[k]
        expected = [0.0 if a is None else (a - mean) / std, float(a is None)]
        expected += [continents[CONTINENTS[k % 3]], flags[str(k % 2 == 0)]]
        torch.testing.assert_close(x, torch.tensor(expected), rtol=1e-5, atol=1e-5)


def test_named_features_override_the_inferred_split(tmp_path: Path) -> None:
    manifest_path = _nested_manifest(tmp_path)
    # names inside the object, or full dotted paths from the row: both read the same field
    for names in (["area_km2"], ["country.area_km2"]):
        cfg = load_config(raw=_config(manifest_path, numeric=names, categorical=["flag"]))
        manifest = read_manifest(manifest_path)
        sources = build_sources(cfg)
        fit_transforms(manifest, sources, split_rows(manifest, "split", "train"))
        t = next(s for s in sources if s.name == "country").transform
        assert t.numeric == tuple(names) and t.categorical == ("flag",)
        assert t.mean[0] == pytest.approx(sum(10.0 + 3 * k for k in range(24) if k % 7 != 3) / 21)


def test_nested_run_trains_checks_clean_and_reloads(tmp_path: Path) -> None:
    manifest = _nested_manifest(tmp_path)
    cfg = load_config(raw=_config(manifest))
    problems, n = check_manifest(manifest, cfg)
    assert problems == [] and n == 36
    metrics = run_training(cfg, tmp_path / "run", show_progress=False)
    assert "retrieval/audio->text/R@1" in metrics
    import modalign

    model = modalign.load(tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert saved["modalities"]["country"]["transform"]["numeric"] == ["area_km2"]
    row = {"area_km2": 40.0, "continent": "Asia", "flag": True, "tags": []}
    emb = model.encode([row], modality="country")
    assert emb.shape == (1, 16) and bool(np.isfinite(emb).all())


def test_init_proposes_nested_fields_and_its_config_checks_and_trains(tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from modalign.cli import app

    manifest = _nested_manifest(tmp_path)
    # the case: the features sit in an object named like the modality init makes of them
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    renamed = [{("tabular" if k == "country" else k): v for k, v in r.items()} for r in rows]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in renamed))
    cfg = tmp_path / "nested.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["init", str(manifest), "--out", str(cfg)])
    assert result.exit_code == 0, result.output
    uses = {
        ln.split()[0]: " ".join(ln.split()[1:3]) for ln in result.output.splitlines() if ln.startswith("  ")
    }
    assert uses["spoken.fr"] == "modality spoken_fr", result.output
    assert uses["spoken.en"] == "not used"  # null in every row
    assert all(uses[f"tabular.{f}"] == "feature of" for f in ("area_km2", "continent", "flag")), result.output
    raw = yaml.safe_load(cfg.read_text())
    assert raw["modalities"]["spoken_fr"]["column"] == "spoken.fr"
    assert raw["modalities"]["spoken_fr"]["kind"] == "audio"
    assert raw["modalities"]["tabular"]["transform"]["numeric"] == ["tabular.area_km2"]
    check = runner.invoke(app, ["data", "check", str(manifest), "--config", str(cfg)])
    assert check.exit_code == 0 and "0 problem(s)" in check.output, check.output
    # data check sees the nested modality in every row of every split
    table = {tuple(ln.split()) for ln in check.output.splitlines()}
    for split, n in (("train", "24"), ("val", "4"), ("test", "8")):
        assert (split, n, "spoken_fr", n, "0", "0") in table, check.output
        assert (split, n, "tabular", n, "0", "0") in table, check.output
    fast = ["trainer.max_steps=2", "trainer.batch_size=8", "trainer.warmup_steps=0", "trainer.val_every=2"]
    run = tmp_path / "run"
    args = ["train", str(cfg), "--out", str(run), *[x for s in fast for x in ("--set", s)]]
    trained = runner.invoke(app, args)
    assert trained.exit_code == 0, trained.output
    report = json.loads((run / "report.json").read_text())
    assert np.isfinite(report["retrieval/spoken_fr->image/R@1"]), sorted(report)


def test_the_readme_example_of_nested_fields_validates() -> None:
    import yaml

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("### Nested fields", 1)[1].split("\n### ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = load_config(raw={"data": {"manifest": "m.jsonl"}, **yaml.safe_load(block)})
    assert cfg.column("speech") == "spoken_description.fr" and cfg.column("country") == "country"
    assert cfg.modalities["country"].transform.numeric == ()  # inferred from the data
    assert cfg.modalities["area"].transform.numeric == ("area_km2",)


def test_an_object_without_scalar_fields_is_refused_naming_its_column(tmp_path: Path) -> None:
    from modalign.data.manifest import Manifest
    from modalign.errors import DataError

    rows = [{"id": str(i), "geo": {"shape": [i, i + 1]}, "split": "train"} for i in range(4)]
    cfg = load_config(
        raw={"data": {"manifest": "m.jsonl"}, "modalities": {"g": {"kind": "tabular", "column": "geo"}}}
    )
    with pytest.raises(DataError, match=r"column 'geo': the objects hold no field of numbers") as e:
        fit_transforms(Manifest.from_rows(rows), build_sources(cfg), range(4))
    assert e.value.reason == "no_features"


def test_zero_shot_prompts_read_a_dotted_text_column() -> None:
    from modalign.data.manifest import Manifest
    from modalign.evaluation.evaluate import manifest_prompts

    rows = [
        {"id": "a", "split": "test", "meta": {"title": "a circle", "kind": "round"}},
        {"id": "b", "split": "test", "meta": {"title": "a square", "kind": "angular"}},
        {"id": "c", "split": "test", "meta": {"title": "a ring", "kind": "round"}},
    ]
    prompts = manifest_prompts(
        Manifest.from_rows(rows),
        split_column="split",
        split="test",
        text_column="meta.title",
        label_column="meta.kind",
    )
    assert prompts == {"round": ["a circle", "a ring"], "angular": ["a square"]}
