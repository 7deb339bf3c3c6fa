"""`modalign init`: a config inferred from a manifest passes `data check` and trains, on the bundled
data sets as they are and on manifests with every kind of column."""

from __future__ import annotations

import csv
import json
from itertools import permutations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import write_dataset, write_jsonl
from typer.testing import CliRunner

from modalign.cli import app
from modalign.config import load_config

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "--set",
    "trainer.max_steps=2",
    "--set",
    "trainer.batch_size=8",
    "--set",
    "trainer.warmup_steps=0",
    "--set",
    "trainer.checkpoint_every=2",
    "--set",
    "trainer.val_every=2",
    "--set",
    "eval.robustness.mcar_rates=[0.0, 0.5]",
]


def _invoke(args: list[str], code: int = 0) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result.output


def _uses(output: str) -> dict[str, str]:
    """``{column: use}`` from the table `init` prints (``  column  use...  reason``)."""
    out = {}
    for line in output.splitlines()[1:]:  # after "N rows in MANIFEST", until the choices
        parts = line.split()
        if not line.startswith("  "):
            break
        if len(parts) >= 3:
            use = " ".join(parts[1:3]) if parts[1] in ("modality", "not") else parts[1]
            if parts[1] == "feature":
                use = " ".join(parts[1:4])
            out[parts[0]] = use
    return out


def _expected_keys(cfg_path: Path) -> list[str]:
    """The report keys a config must produce, from its modalities, label and tasks."""
    cfg = load_config(cfg_path)
    if cfg.fusion is not None:
        return [f"predict/{t.name}/accuracy" for t in cfg.fusion.tasks if t.kind == "multiclass"]
    keys = [f"retrieval/{a}->{b}/R@1" for a, b in permutations(cfg.modalities, 2)]
    if cfg.data.label_column is not None and any(m.kind == "text" for m in cfg.modalities.values()):
        keys += [f"zeroshot/{n}/accuracy" for n, m in cfg.modalities.items() if m.kind != "text"]
    return keys


def _sample_rows(manifest: Path, per_split: dict[str, int]) -> Path:
    """A manifest next to ``manifest`` with rows spread evenly over each split (same files)."""
    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    out = []
    for split, n in per_split.items():
        these = [r for r in rows if r["split"] == split]
        out += these[:: max(1, len(these) // n)][:n]
    path = manifest.with_name("sample.jsonl")
    write_jsonl(path, out)
    return path


# Every bundled data set: (archive, manifest inside it, rows per split to check and train on
# (None = all), {column: use} init must print).
BUNDLED: dict[str, tuple[str, dict[str, int] | None, dict[str, str]]] = {
    "fsdd_digits": (
        "fsdd_digits/manifest.jsonl",
        {"train": 24, "val": 6, "test": 12},  # 3,000 audio clips take a minute to featurise
        {
            "id": "id",
            "split": "split",
            "label": "label",
            "image": "modality image",
            "audio": "modality audio",
            "text": "modality text",
            "speaker": "feature of tabular",
        },
    ),
    "mdi_icons": (
        "mdi_icons/pairs.jsonl",
        {"train": 24, "val": 6, "test": 12},  # 7,188 icons: a minute of validation at batch 8
        {
            "image": "modality image",
            "text": "modality text",
            "name": "not used",  # "ab testing" inside "ab testing (aliases)": a near-copy
            "source": "not used",  # .svg paths
            "license": "not used",  # one value
            "base_id": "not used",  # identifier-like
            "aliases": "not used",  # lists of strings
            "author": "feature of tabular",
            "outline": "feature of tabular",
        },
    ),
    "rosmap": (
        "rosmap/manifest.jsonl",
        None,
        {"label": "label", "mrna": "modality mrna", "meth": "modality meth", "mirna": "modality mirna"},
    ),
    "breast_cancer": (
        "breast_cancer/manifest.jsonl",
        None,
        {"label": "label", "mean": "modality mean", "error": "modality error", "worst": "modality worst"},
    ),
}


@pytest.mark.parametrize("name", list(BUNDLED))
def test_init_on_each_bundled_data_set_checks_and_trains(name: str, tmp_path: Path) -> None:
    inner, per_split, uses = BUNDLED[name]
    archive = tmp_path / f"{name}.tar.gz"
    archive.symlink_to(ROOT / "data" / f"{name}.tar.gz")  # extracted next to the link, in tmp_path
    manifest, cfg = tmp_path / inner, tmp_path / f"{name}.yaml"
    output = _invoke(["init", manifest, "--archive", archive, "--out", cfg])
    found = _uses(output)
    for column, use in uses.items():
        assert found.get(column) == use, (column, output)
    raw = yaml.safe_load(cfg.read_text())
    assert raw["data"]["archive"] == str(archive)
    tabular_only = all(m["kind"] == "tabular" for m in raw["modalities"].values())
    assert (raw.get("fusion") is not None) == tabular_only  # a label and only features: predict
    assert raw["objectives"] == ([] if tabular_only else [{"name": "clip", "weight": 1.0}])

    data = manifest if per_split is None else _sample_rows(manifest, per_split)
    assert "0 problem(s)" in _invoke(["data", "check", data, "--config", cfg])
    run = tmp_path / "run"
    _invoke(["train", cfg, "--out", run, "--set", f"data.manifest={data}", *FAST])
    report = json.loads((run / "report.json").read_text())
    keys = _expected_keys(cfg)
    assert keys and all(np.isfinite(report[k]) for k in keys), (keys, sorted(report))


def test_init_reads_the_clips_and_images_it_configures(tmp_path: Path) -> None:
    # conftest's data: 12x12 grey PNGs, 8 kHz WAV tones of 0.2-0.4 s, texts "a circle" ...
    manifest = write_dataset(tmp_path / "d", {"train": 32, "val": 8, "test": 8})
    cfg = tmp_path / "c.yaml"
    _invoke(["init", manifest, "--out", cfg])
    raw = yaml.safe_load(cfg.read_text())
    image, audio = raw["modalities"]["image"]["transform"], raw["modalities"]["audio"]["transform"]
    assert (image["size"], image["channels"]) == (12, 1)
    assert 0.0 < image["mean"][0] < 0.5 and image["std"][0] > 0.05
    assert audio["sample_rate"] == 8000 and 0.3 <= audio["max_seconds"] <= 0.4  # 95% of 0.2-0.4 s
    assert raw["modalities"]["text"]["kind"] == "text" and raw["data"]["label_column"] == "label"
    assert raw["eval"]["match_on"] == "label"  # "a circle" repeats: same-id retrieval is ill-posed


def _mixed_rows(root: Path, n: int = 48) -> list[dict[str, Any]]:
    """Rows with a column of every kind init must place, on real image files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "npy").mkdir()
    rows = []
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (10, 14, 3), dtype=np.uint8)).save(root / "img" / f"{i}.jpg")
        np.save(root / "npy" / f"{i}.npy", rng.normal(size=(7 + i % 3, 3)))
        rows.append(
            {
                "id": f"r{i}",
                "split": ["train", "train", "train", "valid", "test"][i % 5],
                "photo": f"img/{i}.jpg",
                "sensor": f"npy/{i}.npy",
                "caption": f"a photo number {i} of a {['cat', 'dog', 'bird'][i % 3]}",
                "class": ["cat", "dog", "bird"][i % 3],
                "age": float(rng.integers(1, 90)) if i % 7 else None,
                "sex": ["f", "m"][i % 2],
                "smoker": bool(i % 3),
                "vector": [float(x) for x in rng.normal(size=4)],
                "series": [float(x) for x in rng.normal(size=5 + i % 4)],
                "motion": [[float(a), float(b)] for a, b in rng.normal(size=(6, 2))],
                "constant": "v1",
                "uid": f"u{i:05d}",
                "keywords": ["x", ["y", "z"][i % 2]],
                "report": f"docs/{i}.pdf",
                "mixed": i if i % 2 else str(i),
                "meta": {"site": ["a", "b"][i % 2]},
            }
        )
    return rows


def test_init_places_every_kind_of_column_and_the_config_trains(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    rows = _mixed_rows(root)
    write_jsonl(root / "m.jsonl", rows)
    cfg = tmp_path / "mixed.yaml"
    output = _invoke(["init", root / "m.jsonl", "--out", cfg])
    found = _uses(output)
    expected = {
        "id": "id",
        "split": "split",
        "class": "label",
        "photo": "modality photo",
        "sensor": "modality sensor",
        "caption": "modality caption",
        "vector": "modality vector",
        "series": "modality series",
        "motion": "modality motion",
        "age": "feature of tabular",
        "sex": "feature of tabular",
        "smoker": "feature of tabular",
        "constant": "not used",
        "uid": "not used",
        "keywords": "not used",
        "report": "not used",
        "mixed": "not used",
        # a field of a nested object: a feature read through its dotted column
        "meta.site": "feature of tabular",
    }
    assert found == expected, output
    raw = yaml.safe_load(cfg.read_text())
    mods = raw["modalities"]
    assert {n: m["kind"] for n, m in mods.items()} == {
        "photo": "image",
        "sensor": "timeseries",
        "caption": "text",
        "vector": "tabular",
        "series": "timeseries",
        "motion": "timeseries",
        "tabular": "tabular",
    }
    assert mods["photo"]["transform"]["channels"] == 3 and mods["photo"]["transform"]["size"] == 10
    assert mods["motion"]["transform"]["channels"] == 2 and mods["sensor"]["transform"]["channels"] == 3
    categorical = ["sex", "smoker", "meta.site"]
    assert mods["tabular"]["transform"] == {"numeric": ["age"], "categorical": categorical}
    assert (raw["data"]["val_split"], raw["data"]["label_column"]) == ("valid", "class")
    # the reasons are printed, per column
    assert "an identifier" in output and ".pdf" in output and "mixed types" in output
    assert "0 problem(s)" in _invoke(["data", "check", root / "m.jsonl", "--config", cfg])
    _invoke(["train", cfg, "--out", tmp_path / "run", *FAST])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert all(k in report for k in _expected_keys(cfg)), sorted(report)


def test_a_csv_of_numbers_and_a_label_becomes_a_prediction_task(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "t" / "table.csv"
    path.parent.mkdir()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "split", "height", "weight", "colour", "target"])
        for i in range(60):
            colour = ["red", "blue", "green"][i % 3]
            w.writerow(
                [
                    i,
                    "train" if i < 40 else "test",
                    rng.normal(170, 10),
                    "" if i % 9 == 0 else 70,
                    colour,
                    i % 2,
                ]
            )
    cfg = tmp_path / "t.yaml"
    output = _invoke(["init", path, "--out", cfg])
    raw = yaml.safe_load(cfg.read_text())
    assert raw["modalities"] == {
        "tabular": {
            "kind": "tabular",
            "transform": {"numeric": ["height", "weight"], "categorical": ["colour"]},
        }
    }
    assert raw["fusion"]["tasks"] == [{"name": "target", "kind": "multiclass"}] and raw["objectives"] == []
    assert raw["data"]["val_split"] is None and "no validation split" in cfg.read_text()
    assert "target" in output and "label" in output
    _invoke(["train", cfg, "--out", tmp_path / "run", *FAST])
    assert "predict/target/accuracy" in json.loads((tmp_path / "run" / "report.json").read_text())


def test_the_written_config_is_the_commented_form_of_what_init_inferred(tmp_path: Path) -> None:
    from modalign.workflows.init import infer_config

    manifest = write_dataset(tmp_path / "d", {"train": 16, "val": 4, "test": 4})
    result = infer_config(manifest)
    assert yaml.safe_load(result.text) == result.raw
    lines = result.text.splitlines()
    for name in result.raw["modalities"]:  # a comment right above every modality says why
        i = lines.index(f"  {name}:")
        while lines[i - 1].startswith("  # "):  # to the first line of the comment block
            i -= 1
        assert lines[i].startswith(("  # column", "  # the scalar")), lines[i]
    assert lines[0].startswith("# Written by `modalign init")


def test_init_says_why_it_cannot_write_a_config(tmp_path: Path) -> None:
    root = tmp_path / "x"
    root.mkdir()
    write_jsonl(root / "nosplit.jsonl", [{"id": i, "text": f"a b {i}", "n": i} for i in range(10)])
    assert "no split column" in _invoke(["init", root / "nosplit.jsonl", "--out", tmp_path / "a.yaml"], 2)
    write_jsonl(root / "one.jsonl", [{"id": i, "split": "train", "text": f"a b {i}"} for i in range(10)])
    output = _invoke(["init", root / "one.jsonl", "--out", tmp_path / "b.yaml"], 2)
    assert "only one modality (text)" in output and "--label" in output
    output = _invoke(["init", root / "one.jsonl", "--label", "nope", "--out", tmp_path / "c.yaml"], 2)
    assert "'nope'" in output and "id, split, text" in output
    assert not any((tmp_path / f"{c}.yaml").exists() for c in "abc")


def test_init_keeps_an_existing_config_unless_forced(tmp_path: Path) -> None:
    manifest = write_dataset(tmp_path / "d", {"train": 16, "val": 4, "test": 4})
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("# my edits\n")
    assert "--force" in _invoke(["init", manifest, "--out", cfg], 2)
    assert cfg.read_text() == "# my edits\n"
    _invoke(["init", manifest, "--out", cfg, "--force", "--skip", "audio"])
    raw = yaml.safe_load(cfg.read_text())
    assert "audio" not in raw["modalities"] and "image" in raw["modalities"]


def test_init_without_out_names_the_config_after_the_data_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_dataset(tmp_path / "shapes", {"train": 16, "val": 4, "test": 4})
    monkeypatch.chdir(tmp_path)
    output = _invoke(["init", manifest])
    assert (tmp_path / "shapes.yaml").is_file() and "wrote shapes.yaml" in output


def test_the_readme_example_of_your_own_data_validates() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own data", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = load_config(raw={"data": {"manifest": "m.jsonl"}, **yaml.safe_load(block)})
    assert cfg.column("photo") == "image_path" and cfg.column("caption") == "caption"
    vitals = cfg.modalities["vitals"].transform
    assert vitals.numeric == ("age", "bmi") and vitals.categorical == ("sex", "smoker")
