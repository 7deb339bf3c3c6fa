"""Bad input gives one named error, never a traceback or a silently wrong result (issue 8, C).

One test per finding: duplicate ids, tracebacks that must become ``error:`` lines or the project's
own error types, and the smaller silent problems (tabular values, empty splits, mel filters,
``eval.ks``, float images, BOMs, archives, the manifest path rule).
"""

from __future__ import annotations

import csv
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import tiny_config, write_jsonl
from typer.testing import CliRunner

from modalign.cli import app
from modalign.config import load_config
from modalign.data.dataset import fit_transforms, split_rows
from modalign.data.loading import load_split
from modalign.data.manifest import Manifest, read_manifest
from modalign.errors import CheckpointError, ConfigError, DataError

TEXT = {"kind": "text", "transform": {"vocab_size": 30, "max_length": 4}}
TEXT_ONLY: dict[str, Any] = {  # two text modalities: the cheapest pair a contrastive objective takes
    "data": {"manifest": "unused.jsonl"},
    "modalities": {"text": TEXT, "caption": TEXT},
}


def _cfg_file(tmp_path: Path, raw: dict[str, Any], name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return path


def _check(manifest: Path, cfg: Path, *extra: str) -> Any:
    return CliRunner().invoke(app, ["data", "check", str(manifest), "--config", str(cfg), *extra])


def _one_error_line(result: Any) -> str:
    """The CLI failed with exit code 2 and exactly one ``error:`` line, no traceback."""
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def _rows(manifest: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in manifest.read_text().splitlines()]


def _text_rows(n: int, split: str = "train") -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "text": f"word {i % 3}", "caption": f"say {i}", "split": split} for i in range(n)]


def _saved_model(dataset: Path, out: Path) -> Path:
    """The tiny image/audio/text model of ``tiny_config``, untrained, saved (no training needed)."""
    from modalign.workflows.build import build_model, build_sources

    cfg = load_config(raw=tiny_config(dataset))
    manifest = read_manifest(dataset)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, split_rows(manifest, "split", "train"))
    build_model(cfg, sources).save(out)
    return out


# --- finding 7: duplicate ids ----------------------------------------------------------------


def test_data_check_flags_every_duplicate_id_with_its_rows(dataset: Path, tmp_path: Path) -> None:
    rows = _rows(dataset)
    rows[3]["id"] = rows[0]["id"]
    rows[60]["id"] = rows[0]["id"]  # a second repeat of the same id, in the test split
    rows[5]["id"] = rows[4]["id"]
    (tmp_path / "d").mkdir()
    for sub in ("images", "audio"):
        (tmp_path / "d" / sub).symlink_to(dataset.parent / sub)
    write_jsonl(tmp_path / "d" / "m.jsonl", rows)
    result = _check(tmp_path / "d" / "m.jsonl", _cfg_file(tmp_path, tiny_config(tmp_path / "d" / "m.jsonl")))
    assert result.exit_code == 1, result.output
    dup = [ln for ln in result.output.splitlines() if "duplicate_id" in ln]
    # every repeat is listed at its own row and names the row of the first occurrence
    assert len(dup) == 3, result.output
    for row, first in ((3, 0), (60, 0), (5, 4)):
        assert any(ln.startswith(f"row {row},") and f"row {first}" in ln for ln in dup), (row, dup)


def test_loading_a_split_refuses_duplicate_ids_before_reading_data() -> None:
    from modalign.workflows.build import build_sources

    rows = _text_rows(8)
    rows[6]["id"] = rows[1]["id"]
    rows[7]["id"] = rows[2]["id"]
    manifest = Manifest.from_rows(rows)
    sources = build_sources(load_config(raw=TEXT_ONLY))
    fit_transforms(manifest, sources, range(8))
    with pytest.raises(DataError, match="duplicate") as info:
        load_split(manifest, sources, "train", show_progress=False)
    assert info.value.reason == "duplicate_id"
    assert "'t1' (rows 1, 6)" in str(info.value) and "'t2' (rows 2, 7)" in str(info.value)
    # ids that repeat only across splits are fine for one split
    rows[6]["split"] = rows[7]["split"] = "test"
    assert len(load_split(Manifest.from_rows(rows), sources, "train", show_progress=False)) == 6


# --- finding 8: tracebacks --------------------------------------------------------------------


def test_non_utf8_manifest_names_the_byte_offset(dataset: Path, tmp_path: Path) -> None:
    good = dataset.read_bytes()
    offset = good.index(b"circle")
    (tmp_path / "m.jsonl").write_bytes(good[:offset] + b"\xff" + good[offset:])
    line = good[:offset].count(b"\n") + 1
    with pytest.raises(DataError, match=f"byte offset {offset} .*line {line}") as info:
        read_manifest(tmp_path / "m.jsonl")
    assert info.value.reason == "bad_encoding"
    (tmp_path / "m.csv").write_bytes(b"id,text\na,caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(DataError, match="byte offset 13 .*line 2"):
        read_manifest(tmp_path / "m.csv")
    cfg = _cfg_file(tmp_path, tiny_config(tmp_path / "m.jsonl"))
    assert "byte offset" in _one_error_line(_check(tmp_path / "m.jsonl", cfg))


def test_corrupt_parquet_is_a_data_error(dataset: Path, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    (tmp_path / "m.parquet").write_bytes(b"PAR1 this is not a parquet file PAR1")
    with pytest.raises(DataError, match="Parquet") as info:
        read_manifest(tmp_path / "m.parquet")
    assert info.value.reason == "bad_manifest"
    cfg = _cfg_file(tmp_path, tiny_config(tmp_path / "m.parquet"))
    assert "m.parquet" in _one_error_line(_check(tmp_path / "m.parquet", cfg))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(modalities=[1]),
        lambda d: d.pop("embed_dim"),
        lambda d: d["modalities"]["image"].update(transform="size=8"),
        lambda d: d["modalities"]["text"].pop("kind"),
        lambda d: d.update(fusion={"name": "concat"}),
        lambda d: d["modalities"]["audio"]["transform"].update(n_fft="wide"),
        lambda d: d.update(embed_dim=-4),
        lambda d: [1, 2],
    ],
    ids=[
        "modalities-list",
        "no-embed-dim",
        "transform-string",
        "no-kind",
        "fusion-no-tasks",
        "n-fft-string",
        "negative-embed-dim",
        "top-level-list",
    ],
)
def test_load_of_a_config_json_with_the_wrong_structure_is_a_checkpoint_error(
    dataset: Path, tmp_path: Path, mutate: Any
) -> None:
    import modalign

    model_dir = _saved_model(dataset, tmp_path / "model")
    desc = json.loads((model_dir / "config.json").read_text())
    replaced = mutate(desc)
    desc = replaced if isinstance(replaced, list) else desc
    (model_dir / "config.json").write_text(json.dumps(desc))
    with pytest.raises(CheckpointError, match="config.json"):
        modalign.load(model_dir)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("k=[1", "--set k=[1"),
        ("modalities.text.transform=5", "modalities.text.transform"),
        ("modalities.text.transform=[vocab_size]", "modalities.text.transform"),
        ("trainer.threads=0", "trainer.threads"),
        ("trainer.threads=-2", "trainer.threads"),
        ("trainer.betas=[2, 2]", "trainer.betas"),
        ("trainer.betas=[0.9, 1.0]", "trainer.betas"),
        ("trainer.eps=-1", "trainer.eps"),
        ("trainer.grad_clip=-1", "trainer.grad_clip"),
        ("trainer.lr=.inf", "trainer.lr"),
        ("modalities.audio.transform.max_seconds=0.001", "modalities.audio.transform"),
    ],
)
def test_bad_config_values_are_config_errors(dataset: Path, override: str, field: str) -> None:
    raw = tiny_config(dataset)
    raw["modalities"]["audio"]["transform"]["n_fft"] = 128
    with pytest.raises(ConfigError, match=field.replace("[", r"\[")):
        load_config(raw={**raw}, overrides=[override])


def test_bad_set_and_transform_exit_2_with_one_error_line(dataset: Path, tmp_path: Path) -> None:
    cfg = _cfg_file(tmp_path, tiny_config(dataset))
    for override in ("k=[1", "modalities.image.transform=5", "modalities.audio.transform.max_seconds=0.001"):
        _one_error_line(_check(dataset, cfg, "--set", override))


def test_list_valued_labels_are_reported_and_never_reach_evaluation(dataset: Path, tmp_path: Path) -> None:
    rows = _rows(dataset)
    test_row = next(i for i, r in enumerate(rows) if r["split"] == "test")
    rows[test_row]["label"] = [1, 2]
    rows[0]["label"] = {"class": 1}
    (tmp_path / "d").mkdir()
    for sub in ("images", "audio"):
        (tmp_path / "d" / sub).symlink_to(dataset.parent / sub)
    manifest = tmp_path / "d" / "m.jsonl"
    write_jsonl(manifest, rows)
    result = _check(manifest, _cfg_file(tmp_path, tiny_config(manifest)))
    assert result.exit_code == 1, result.output
    bad = [ln for ln in result.output.splitlines() if "bad_label" in ln]
    assert len(bad) == 2, result.output
    assert bad[0].startswith("row 0, column 'label'") and bad[1].startswith(f"row {test_row}, column 'label'")
    # training: the row is bad like any other (skipped and counted, or a DataError with on_error=fail)
    from modalign.workflows.build import build_sources

    cfg = load_config(raw=tiny_config(manifest))
    m = read_manifest(manifest)
    sources = build_sources(cfg)
    fit_transforms(m, sources, split_rows(m, "split", "train"))
    test = load_split(
        m, sources, "test", keep_columns=["label"], scalar_columns=["label"], show_progress=False
    )
    assert test.skipped == {"bad_label": 1} and all(not isinstance(v, list) for v in test.columns["label"])
    with pytest.raises(DataError, match=f"row {test_row}, column 'label'"):
        load_split(m, sources, "test", scalar_columns=["label"], on_error="fail", show_progress=False)


def test_list_valued_task_labels_fail_with_a_data_error_not_a_type_error() -> None:
    from modalign.tasks import TaskSpec, encode_targets, infer_classes

    spec = infer_classes(TaskSpec("y"), [0, [1, 2], 1, {"a": 1}])  # bad values are left to the rows
    assert spec.classes == (0, 1)
    with pytest.raises(DataError, match="row 1, column 'y'"):
        encode_targets([spec], {"y": [0, [1, 2]]})
    multi = infer_classes(TaskSpec("m", kind="multilabel"), [["a"], "ab", ["b"]])
    assert multi.classes == ("a", "b")  # a string is not a set of classes (not 'a' and 'b')
    with pytest.raises(DataError, match="row 0, column 'm'"):
        encode_targets([multi], {"m": ["ab"]})
    with pytest.raises(DataError, match="not finite"):
        encode_targets([TaskSpec("r", kind="regression")], {"r": [1.0, float("inf")]})


def test_encode_refuses_bad_sample_rates_and_batch_sizes(dataset: Path, tmp_path: Path) -> None:
    import modalign

    model = modalign.load(_saved_model(dataset, tmp_path / "model"))
    wave = np.zeros(800, dtype=np.float32)
    for rate in (0, -8000, float("nan"), 8000.5):
        with pytest.raises(DataError, match="sample rate"):
            model.encode([(wave, rate)], modality="audio")
    for size in (0, -1):
        with pytest.raises(ConfigError, match="batch_size"):
            model.encode(["a circle"], modality="text", batch_size=size)
        with pytest.raises(ConfigError, match="batch_size"):
            model.predict({"text": ["a circle"]}, batch_size=size)


def test_unexpected_exceptions_become_one_error_line_unless_debugging(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modalign.workflows.check as check

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(check, "check_data", broken)
    cfg = _cfg_file(tmp_path, tiny_config(dataset))
    line = _one_error_line(_check(dataset, cfg))
    assert "internal error" in line and "KeyError" in line and "MODALIGN_DEBUG=1" in line
    monkeypatch.setenv("MODALIGN_DEBUG", "1")
    result = _check(dataset, cfg)
    assert isinstance(result.exception, KeyError)  # the real traceback, for a bug report
    monkeypatch.setattr(check, "check_data", lambda *a, **k: (_ for _ in ()).throw(DataError("bad")))
    assert isinstance(_check(dataset, cfg).exception, DataError)


# --- finding 9: smaller silent problems --------------------------------------------------------


def test_non_finite_and_non_numeric_tabular_values_are_listed_with_row_and_column(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "a": float(i), "b": 2.0 * i, "text": f"w{i}", "split": "train"} for i in range(8)]
    rows[2]["a"] = "inf"
    rows[4]["b"] = "abc"
    rows[6]["a"] = 1e999  # json.dumps writes Infinity
    write_jsonl(tmp_path / "m.jsonl", rows)
    raw = {
        "data": {"manifest": str(tmp_path / "m.jsonl"), "test_split": None},  # train rows only
        "modalities": {"t": {"kind": "tabular", "transform": {"numeric": ["a", "b"]}}, "text": TEXT},
    }
    result = _check(tmp_path / "m.jsonl", _cfg_file(tmp_path, raw))
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    for row, col, reason in ((2, "a", "non_finite"), (4, "b", "wrong_type"), (6, "a", "non_finite")):
        assert any(ln.startswith(f"row {row}, column '{col}'") and reason in ln for ln in lines), (row, lines)
    assert "8 rows checked, 3 problem(s)" in result.output
    # training statistics come from the good rows only (rows 2, 4, 6 are skipped whole)
    from modalign.workflows.build import build_sources

    sources = build_sources(load_config(raw=raw))
    fit_transforms(read_manifest(tmp_path / "m.jsonl"), sources, range(8))
    a_values = [0.0, 1.0, 3.0, 5.0, 7.0]
    assert sources[0].transform.mean[0] == pytest.approx(sum(a_values) / 5)  # type: ignore[attr-defined]


def test_a_test_split_without_rows_fails_before_training(tmp_path: Path) -> None:
    from modalign.workflows.train import run_training

    write_jsonl(tmp_path / "m.jsonl", _text_rows(8))
    raw = {**TEXT_ONLY, "data": {"manifest": str(tmp_path / "m.jsonl")}, "trainer": {"batch_size": 4}}
    with pytest.raises(ConfigError, match="data.test_split='test' selects no rows"):
        run_training(load_config(raw=raw), tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_eval_on_a_manifest_without_the_models_columns_fails(dataset: Path, tmp_path: Path) -> None:
    model_dir = _saved_model(dataset, tmp_path / "model")
    other = [{"id": r["id"], "caption": r["text"], "split": r["split"]} for r in _rows(dataset)]
    write_jsonl(tmp_path / "other.jsonl", other)
    result = CliRunner().invoke(app, ["eval", str(model_dir), "--data", str(tmp_path / "other.jsonl")])
    line = _one_error_line(result)
    assert "no usable rows" in line and "'image', 'audio', 'text'" in line, line
    assert not list(tmp_path.rglob("report.json"))
    result = CliRunner().invoke(app, ["eval", str(model_dir), "--data", str(dataset), "--split", "dev"])
    assert "split 'dev' selects no rows" in _one_error_line(result)


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"n_mels": 200}, "n_mels"),
        ({"f_max": 5000.0}, "f_max"),
        ({"f_min": 3000.0, "f_max": 2000.0}, "f_min"),
        ({"n_fft": 64, "n_mels": 30}, "n_mels"),  # 33 bins, but the low bands fall between bins
    ],
)
def test_mel_filters_that_would_be_empty_are_refused(settings: dict[str, Any], field: str) -> None:
    from modalign.data.transforms.audio import AudioTransform

    audio = {"kind": "audio", "transform": {"sample_rate": 8000, "n_fft": 128, "n_mels": 16, **settings}}
    with pytest.raises(ConfigError, match=f"modalities.a.transform.*{field}"):
        load_config(raw={"data": {"manifest": "m.jsonl"}, "modalities": {"a": audio}})
    with pytest.raises(ConfigError, match=field):
        AudioTransform(**audio["transform"])  # the Python API refuses them too


def test_every_shipped_audio_setting_has_no_empty_mel_filter() -> None:
    from modalign.data.transforms.audio import AudioTransform

    root = Path(__file__).resolve().parents[1] / "configs"
    for path in root.glob("*.yaml"):
        for m in load_config(path).modalities.values():
            if m.kind == "audio":
                t = AudioTransform(**m.transform.model_dump())
                assert bool((t._fb.sum(dim=1) > 0).all()), path


@pytest.mark.parametrize("ks", [[0], [1, -5], []])
def test_eval_ks_must_be_positive(ks: list[int]) -> None:
    with pytest.raises(ConfigError, match="eval.ks"):
        load_config(raw={**TEXT_ONLY, "eval": {"ks": ks}})


def test_float_images_in_0_1_equal_their_uint8_version() -> None:
    from modalign.data.transforms.image import ImageTransform

    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (12, 10)).astype(np.uint8)
    rgb = rng.integers(0, 256, (9, 12, 3)).astype(np.uint8)
    for channels, img in ((1, grey), (3, rgb)):
        t = ImageTransform(size=8, channels=channels)
        as_uint8 = t.load(img, Path("."))
        as_float = t.load(img.astype(np.float32) / 255.0, Path("."))
        assert float((as_float - as_uint8).abs().max()) < 1e-6
        assert float((t.load(img.astype(np.int64), Path(".")) - as_uint8).abs().max()) < 1e-6
    t = ImageTransform(size=8, channels=1)
    for bad in (grey.astype(np.float32), np.full((4, 4), np.nan), np.full((4, 4), 300)):
        with pytest.raises(DataError, match="image"):
            t.load(bad, Path("."))


def test_a_utf8_bom_does_not_hide_the_first_column(tmp_path: Path) -> None:
    with open(tmp_path / "m.csv", "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerows([["id", "text"], ["a", "hello"], ["b", "world"]])
    assert [r["id"] for r in read_manifest(tmp_path / "m.csv").rows] == ["a", "b"]
    (tmp_path / "m.jsonl").write_bytes(b'\xef\xbb\xbf{"id": "a"}\n{"id": "b"}\n')
    assert [r["id"] for r in read_manifest(tmp_path / "m.jsonl").rows] == ["a", "b"]


def test_data_check_extracts_the_configs_archive_first(tmp_path: Path) -> None:
    src = tmp_path / "src" / "set"
    src.mkdir(parents=True)
    write_jsonl(src / "manifest.jsonl", _text_rows(6))
    with tarfile.open(tmp_path / "set.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="set")
    manifest = tmp_path / "set" / "manifest.jsonl"
    data = {"manifest": str(manifest), "archive": str(tmp_path / "set.tar.gz"), "test_split": None}
    raw = {**TEXT_ONLY, "data": data}
    result = _check(manifest, _cfg_file(tmp_path, raw))
    assert result.exit_code == 0, result.output
    assert "6 rows checked, 0 problem(s)" in result.output


def test_manifest_paths_follow_the_documented_rule(tmp_path: Path) -> None:
    from modalign.data.manifest import resolve_inside

    root = tmp_path / "corpus"
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.png").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    (root / "images" / "link.png").symlink_to(tmp_path / "secret.txt")
    (root / "images" / "inner.png").symlink_to(root / "images" / "a.png")
    assert resolve_inside("images/a.png", root) == (root / "images" / "a.png").resolve()
    assert resolve_inside("images/../images/inner.png", root) == (root / "images" / "a.png").resolve()
    assert resolve_inside(str(root / "images" / "a.png"), root) == (root / "images" / "a.png").resolve()
    for outside in (
        "../secret.txt",
        str(tmp_path / "secret.txt"),
        "images/link.png",
        "images/../../secret.txt",
    ):
        with pytest.raises(DataError, match="outside") as info:
            resolve_inside(outside, root)
        assert info.value.reason == "outside_root"
