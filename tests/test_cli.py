"""The command line as a user runs it: help, version, train, eval, another manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import tiny_config
from typer.testing import CliRunner

import modalign
from modalign.cli import app

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ["torch", "matplotlib", "faiss", "fastapi", "transformers", "open_clip", "timm", "pandas"]


def test_help_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "from modalign.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "train" in out.stdout and "eval" in out.stdout
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"modalign {modalign.__version__}"


def test_public_api_is_guarded() -> None:
    assert sorted(modalign.__all__) == sorted(
        [
            "Hit",
            "Index",
            "MultimodalModel",
            "__version__",
            "evaluate_samples",
            "load",
            "load_config",
            "run_training",
        ]
    )
    for name in modalign.__all__:
        assert getattr(modalign, name) is not None


def test_train_then_eval_from_the_cli(dataset: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(dataset)))
    run = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(cfg),
            "--out",
            str(run),
            "--set",
            "trainer.max_steps=4",
            "--set",
            "trainer.seed=3",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["max_steps"] == 4 and saved["trainer"]["seed"] == 3
    assert sum(1 for _ in (run / "metrics.jsonl").open()) == 4
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            str(run / "model"),
            "--data",
            str(dataset),
            "--split",
            "test",
            "--match-on",
            "label",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    trained = json.loads((run / "report.json").read_text())
    for key in (
        "retrieval/audio->image/R@1",
        "retrieval/text->audio/median_rank",
        "zeroshot/image/accuracy",
    ):
        assert report[key] == trained[key], key  # the same model, split and semantics
    # id matching: every query has exactly one positive
    result = CliRunner().invoke(app, ["eval", str(run / "model"), "--data", str(dataset), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["meta"]["match_on"] == "id"


def test_bad_config_exits_with_a_message(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data: {manifest: x.jsonl}\nmodalities: {a: {kind: smell}}\n")
    result = CliRunner().invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "modalities.a.kind" in result.output


def test_mdi_config_trains_on_another_image_text_manifest(dataset: Path, tmp_path: Path) -> None:
    # columns id, image, text, split (+ audio, label and a nested "extra" that must be ignored)
    result = CliRunner().invoke(
        app,
        [
            "train",
            str(ROOT / "configs" / "mdi_icons.yaml"),
            "--out",
            str(tmp_path / "run"),
            "--set",
            f"data.manifest={dataset}",
            "--set",
            "trainer.max_steps=2",
            "--set",
            "trainer.batch_size=16",
            "--set",
            "trainer.warmup_steps=1",
            "--set",
            "modalities.image.preset=tiny",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert set(k.split("/")[1] for k in report if k.startswith("retrieval/")) == {
        "image->text",
        "text->image",
    }
    assert report["retrieval/image->text/n_queries"] == 16


def test_every_shipped_config_validates() -> None:
    from modalign.config import load_config

    configs = sorted((ROOT / "configs").glob("*.yaml"))
    assert {p.name for p in configs} >= {"quickstart.yaml", "mdi_icons.yaml", "rosmap.yaml"}
    for path in configs:
        load_config(path)
