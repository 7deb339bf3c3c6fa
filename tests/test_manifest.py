"""Manifests in every format, missing values as absent modalities, archives, and data check."""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import tiny_config, write_dataset, write_jsonl
from PIL import Image
from typer.testing import CliRunner

from modalign.cli import app
from modalign.config import load_config
from modalign.data.dataset import collate, fit_transforms, load_samples
from modalign.data.manifest import ensure_extracted, read_manifest
from modalign.errors import DataError
from modalign.workflows.build import build_sources

ROWS = [
    {"id": "a", "text": "hello", "x": 1.5, "split": "train"},
    {"id": "b", "text": "", "x": None, "split": "train"},
    {"id": "c", "x": 2.0, "split": "test"},  # no "text" key at all
]


def test_jsonl_csv_parquet_agree_on_missing_values(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "m.jsonl", ROWS)
    with open(tmp_path / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "text", "x", "split"])
        w.writeheader()
        w.writerows(ROWS)
    paths = [tmp_path / "m.jsonl", tmp_path / "m.csv"]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "m.parquet")
        paths.append(tmp_path / "m.parquet")
    except ImportError:
        pass
    cfg = load_config(raw={"data": {"manifest": "m.jsonl"}, "modalities": {"text": {"kind": "text"}}})
    for path in paths:
        m = read_manifest(path)
        sources = build_sources(cfg)
        fit_transforms(m, sources, [0, 1, 2])
        s = load_samples(m, sources, [0, 1, 2])
        # rows b and c have no text and no other modality: skipped as "no_modality"
        assert s.ids == ["a"], path
        assert s.skipped == {"no_modality": 2}, path


def test_absent_modality_is_carried_as_present_false(dataset: Path, tmp_path: Path) -> None:
    rows = [json.loads(x) for x in dataset.read_text().splitlines()][:4]
    rows[1]["image"] = None
    del rows[2]["audio"]
    rows[3]["text"] = ""
    for r in rows:
        r["image"] = None if r["image"] is None else str(dataset.parent / r["image"])
        r["audio"] = str(dataset.parent / r["audio"]) if "audio" in r else None
    write_jsonl(tmp_path / "m.jsonl", rows)
    cfg = load_config(raw=tiny_config(tmp_path / "m.jsonl"))
    m = read_manifest(tmp_path / "m.jsonl")
    sources = build_sources(cfg)
    fit_transforms(m, sources, range(4))
    s = load_samples(m, sources, range(4))
    batch = collate(s, [0, 1, 2, 3], sources)
    assert batch.present["image"].tolist() == [True, False, True, True]
    assert batch.present["audio"].tolist() == [True, True, False, True]
    assert batch.present["text"].tolist() == [True, True, True, False]


def test_bad_jsonl_line_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "m.jsonl").write_text('{"id": 1}\n{oops\n')
    with pytest.raises(DataError, match="line 2"):
        read_manifest(tmp_path / "m.jsonl")


def test_archive_is_extracted_atomically_and_refuses_escapes(tmp_path: Path) -> None:
    src = tmp_path / "src" / "set"
    src.mkdir(parents=True)
    (src / "manifest.jsonl").write_text('{"id": "a"}\n')
    with tarfile.open(tmp_path / "set.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="set")
    ensure_extracted(tmp_path / "set" / "manifest.jsonl", tmp_path / "set.tar.gz")
    assert (tmp_path / "set" / "manifest.jsonl").read_text() == '{"id": "a"}\n'
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 0
        tar.addfile(info)
    with pytest.raises(DataError):
        ensure_extracted(tmp_path / "nowhere" / "manifest.jsonl", evil)
    assert not (tmp_path.parent / "outside.txt").exists()


def _broken_manifest(root: Path) -> Path:
    """One row per problem the check must report; the first row is fine."""
    write_dataset(root, {"train": 8})
    rows = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    data = (root / "images" / "1.png").read_bytes()
    (root / "images" / "cut.png").write_bytes(data[: len(data) // 2])
    (root / "audio" / "junk.wav").write_bytes(b"RIFF\x00\x00")
    sf.write(root / "audio" / "empty.wav", np.zeros(0, dtype=np.float32), 8000)
    Image.new("L", (4, 4)).save(root / "images" / "ok.png")
    rows[1]["image"] = "images/nope.png"  # missing file
    rows[2]["image"] = "images/cut.png"  # truncated image
    rows[3]["audio"] = "audio/junk.wav"  # undecodable audio
    rows[4]["audio"] = "audio/empty.wav"  # zero-length audio
    rows[5]["text"] = "   "  # empty text
    rows[6]["image"] = 42  # wrong type
    rows[7].update(image=None, audio=None, text=None)  # nothing present
    write_jsonl(root / "manifest.jsonl", rows)
    return root / "manifest.jsonl"


def test_data_check_reports_every_problem_and_writes_nothing(tmp_path: Path) -> None:
    import yaml

    manifest = _broken_manifest(tmp_path / "d")
    cfg_path = tmp_path / "cfg.yaml"
    raw = tiny_config(manifest)
    raw["data"]["test_split"] = None  # the manifest holds train rows only
    cfg_path.write_text(yaml.safe_dump(raw))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = CliRunner().invoke(app, ["data", "check", str(manifest), "--config", str(cfg_path)])
    assert result.exit_code == 1, result.output
    out = result.output
    expected = [
        ("row 1", "'image'", "missing_file", "nope.png"),
        ("row 2", "'image'", "bad_image", "cut.png"),
        ("row 3", "'audio'", "bad_audio", "junk.wav"),
        ("row 4", "'audio'", "empty_audio", "empty.wav"),
        ("row 5", "'text'", "empty_text", ""),
        ("row 6", "'image'", "wrong_type", ""),
        ("row 7", "", "no_modality", ""),
    ]
    lines = out.splitlines()
    for row, col, reason, file in expected:
        assert any(
            row + "," in ln or row + ":" in ln for ln in lines if reason in ln and col in ln and file in ln
        ), (
            row,
            reason,
            out,
        )
    assert "row 0" not in out
    assert "8 rows checked, 7 problem(s)" in out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_data_check_passes_on_clean_data(dataset: Path, tmp_path: Path) -> None:
    import yaml

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(dataset)))
    result = CliRunner().invoke(app, ["data", "check", str(dataset), "--config", str(cfg_path)])
    assert result.exit_code == 0, result.output
    assert "0 problem(s)" in result.output
