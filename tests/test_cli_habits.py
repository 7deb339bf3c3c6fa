"""What a newcomer types first: --set on list items, typos, `modalign list`, loading a run directory."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import tiny_config
from typer.testing import CliRunner

import modalign
from modalign.cli import app
from modalign.config import load_config
from modalign.errors import CheckpointError, ConfigError
from modalign.registry import BUILTIN


def _raw(manifest: Path = Path("m.jsonl")) -> dict[str, Any]:
    raw = tiny_config(manifest)
    raw["objectives"] = [{"name": "clip", "weight": 1.0}, {"name": "uniformity", "weight": 0.1}]
    return raw


# --- --set with list indices ------------------------------------------------------------------


def test_set_addresses_list_items_by_index() -> None:
    cfg = load_config(raw=_raw(), overrides=["objectives.0.weight=0.5", "objectives.1.name=alignment"])
    assert [(o.name, o.weight) for o in cfg.objectives] == [("clip", 0.5), ("alignment", 0.1)]
    cfg = load_config(raw=_raw(), overrides=["objectives.0.name=siglip", "eval.ks.0=3"])
    assert cfg.objectives[0].name == "siglip" and cfg.eval.ks == (3, 5, 10)  # default (1, 5, 10)


def test_set_one_past_the_end_appends_an_item() -> None:
    cfg = load_config(raw=_raw(), overrides=["objectives.2={name: alignment, weight: 0.2}"])
    assert [o.name for o in cfg.objectives] == ["clip", "uniformity", "alignment"]
    cfg = load_config(raw=_raw(), overrides=["objectives.2.name=alignment", "objectives.2.weight=0.3"])
    assert (cfg.objectives[2].name, cfg.objectives[2].weight) == ("alignment", 0.3)


def test_set_on_a_list_the_config_leaves_out_starts_from_the_schema_default() -> None:
    raw = _raw()
    del raw["objectives"]  # the schema's default: [{name: clip, weight: 1.0}]
    cfg = load_config(raw=raw, overrides=["objectives.0.weight=0.25"])
    assert [(o.name, o.weight) for o in cfg.objectives] == [("clip", 0.25)]


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("objectives.5.weight=1", ["objectives", "2 item", "0 to 2"]),
        ("objectives.clip.weight=1", ["objectives", "is a list", "objectives.0"]),
        ("objectives.-1.weight=1", ["objectives", "0 to 2"]),
        ("trainer.max_steps.x=1", ["trainer.max_steps", "not a section"]),
    ],
)
def test_a_bad_index_names_the_list_and_its_length(override: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(raw=_raw(), overrides=[override])
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_integer_keys_of_a_mapping_stay_integers() -> None:
    raw = _raw()
    raw["eval"]["robustness"] = {"mnar_drop": {"image": {0: 0.5, 1: 0.0}}}
    cfg = load_config(raw=raw, overrides=["eval.robustness.mnar_drop.image.0=0.9"])
    assert cfg.eval.robustness.mnar_drop["image"] == {0: 0.9, 1: 0.0}


# --- "did you mean" for config keys --------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "where", "suggestion"),
    [
        ("trainer.max_step=2", "trainer.max_step", "trainer.max_steps"),
        ("trainr.max_steps=2", "trainr", "trainer"),
        ("objectives.0.wieght=2", "objectives.0.wieght", "objectives.0.weight"),
        ("modalities.image.encoder_parms={}", "modalities.image.encoder_parms", "encoder_params"),
        ("modalities.image.transform.szie=8", "modalities.image.transform.szie", "transform.size"),
        ("data.labl_column=label", "data.labl_column", "data.label_column"),
        ("eval.robustness.mcar_rate=[0.1]", "eval.robustness.mcar_rate", "mcar_rates"),
    ],
)
def test_a_misspelt_key_gets_a_did_you_mean(override: str, where: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(raw=_raw(), overrides=[override])
    line = next(line for line in str(e.value).splitlines() if line.strip().startswith(where + ":"))
    assert "did you mean" in line and suggestion in line, line


def test_an_unknown_key_without_a_close_match_lists_the_fields() -> None:
    with pytest.raises(ConfigError) as e:
        load_config(raw=_raw(), overrides=["trainer.zzzz=1"])
    line = next(line for line in str(e.value).splitlines() if "trainer.zzzz" in line)
    assert "did you mean" not in line and "max_steps" in line and "batch_size" in line, line


def test_a_typo_from_the_cli_says_did_you_mean(tmp_path: Path) -> None:
    import yaml

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(_raw(tmp_path / "m.jsonl")))
    result = CliRunner().invoke(
        app, ["train", str(cfg), "--out", str(tmp_path / "r"), "--set", "trainer.max_step=2"]
    )
    assert result.exit_code == 2
    assert "trainer.max_step" in result.output and "did you mean trainer.max_steps" in result.output


# --- modalign list --------------------------------------------------------------------------------


def _first_paragraph(obj: object) -> str:
    doc = inspect.getdoc(obj)
    assert doc is not None, f"{obj} has no docstring"
    return " ".join(doc.split("\n\n")[0].split())


@pytest.mark.parametrize(
    ("section", "kind"), [("encoders", "encoder"), ("objectives", "objective"), ("fusion", "fusion")]
)
def test_list_shows_every_registered_name_with_its_description(section: str, kind: str) -> None:
    from modalign.registry import lookup

    result = CliRunner().invoke(app, ["list", section])
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip()]
    for name in BUILTIN[kind]:
        row = next((line for line in lines if line.split()[0] == name), None)
        assert row is not None, (name, result.output)
        assert row.removeprefix(name).strip() == _first_paragraph(lookup(kind, name)), row
    others = {n for k in BUILTIN if k != kind for n in BUILTIN[k]} - set(BUILTIN[kind])
    assert not others & {line.split()[0] for line in lines}  # only the section asked for


def test_list_without_a_section_shows_all_three_and_a_bad_section_fails() -> None:
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    words = {line.split()[0] for line in result.output.splitlines() if line.strip()}
    assert set(BUILTIN["encoder"]) | set(BUILTIN["objective"]) | set(BUILTIN["fusion"]) <= words
    result = CliRunner().invoke(app, ["list", "objective"])  # singular is accepted too
    assert result.exit_code == 0 and "siglip" in result.output
    result = CliRunner().invoke(app, ["list", "losses"])
    assert result.exit_code == 2 and "encoders, objectives, fusion" in result.output


# --- modalign.load of a run directory ----------------------------------------------------------


def _save_tiny_model(dataset: Path, model_dir: Path) -> modalign.MultimodalModel:
    from modalign.data.dataset import fit_transforms, split_rows
    from modalign.data.manifest import read_manifest
    from modalign.workflows.build import build_model, build_sources

    cfg = load_config(raw=tiny_config(dataset))
    manifest = read_manifest(dataset)
    sources = build_sources(cfg)
    fit_transforms(manifest, sources, split_rows(manifest, "split", "train"))
    torch.manual_seed(0)
    model = build_model(cfg, sources)
    model.save(model_dir)
    return model


def test_load_of_a_run_directory_finds_its_model(dataset: Path, tmp_path: Path) -> None:
    saved = _save_tiny_model(dataset, tmp_path / "run" / "model")
    loaded = modalign.load(tmp_path / "run")
    assert loaded.modalities == saved.modalities
    for k, v in saved.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    # a model directory still loads as it is
    assert modalign.load(tmp_path / "run" / "model").modalities == saved.modalities


def test_load_of_a_directory_without_a_model_says_what_it_expects(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as e:
        modalign.load(tmp_path / "nothing-here")
    assert "config.json" in str(e.value) and "nothing-here" in str(e.value)
    run = tmp_path / "unfinished"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(CheckpointError) as e:
        modalign.load(run)
    message = str(e.value)
    assert "model" in message and "--resume" in message, message
