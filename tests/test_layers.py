"""Layering: config validation imports no model code, the library never imports the workflows, and
the static table of built-in names equals what the packages register."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

import modalign.config as config_module
from modalign.config import ExperimentConfig, TrainerConfig
from modalign.registry import BUILTIN, names

SRC = Path(__file__).resolve().parents[1] / "src" / "modalign"
ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout.strip()


def test_validating_a_config_imports_no_torch_and_no_model_module():
    heavy = _run(
        "import sys; from modalign.config import load_config; "
        "load_config('configs/quickstart.yaml'); load_config('configs/rosmap.yaml'); "
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', "
        "'modalign.encoders', 'modalign.objectives', 'modalign.fusion', 'modalign.model'))))"
    )
    assert heavy == "[]"


def test_unknown_names_fail_validation_with_close_matches_without_imports():
    out = _run(
        "import sys\nfrom modalign.config import load_config\nfrom modalign.errors import ModalignError\n"
        "raw = {'data': {'manifest': 'x.jsonl'}, "
        "'modalities': {'a': {'kind': 'text'}, 'b': {'kind': 'image'}}, 'objectives': [{'name': 'siglp'}]}\n"
        "try:\n    load_config(raw=raw)\nexcept ModalignError as e:\n    print(e)\n"
        "print('torch' in sys.modules)"
    )
    assert "siglip" in out and out.endswith("False")


def test_builtin_name_table_equals_the_registered_names():
    import modalign.workflows.build  # noqa: F401  (imports every package that registers)

    for kind, table in BUILTIN.items():
        assert sorted(table) == names(kind), kind


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_layers_point_down():
    # package -> packages it must never import (DESIGN.md: dependencies point downward only)
    forbidden = {
        "objectives": (
            "modalign.data",
            "modalign.training",
            "modalign.evaluation",
            "modalign.fusion",
            "modalign.model",
            "modalign.workflows",
            "modalign.encoders",
        ),
        "encoders": ("modalign.training", "modalign.evaluation", "modalign.workflows", "modalign.model"),
        "fusion": (
            "modalign.training",
            "modalign.evaluation",
            "modalign.workflows",
            "modalign.model",
            "modalign.data",
            "modalign.objectives._",
        ),
        "data": (
            "modalign.training",
            "modalign.evaluation",
            "modalign.workflows",
            "modalign.model",
            "modalign.fusion",
            "modalign.encoders",
        ),
        "training": ("modalign.evaluation", "modalign.workflows", "modalign.cli"),
        "evaluation": ("modalign.training", "modalign.workflows", "modalign.cli"),
    }
    bad = []
    for package, banned in forbidden.items():
        for path in (SRC / package).rglob("*.py"):
            for module in _imports(path):
                if module.startswith(banned):
                    bad.append(f"{path.relative_to(SRC)} imports {module}")
    for path in [SRC / "registry.py", *(SRC / "config").glob("*.py"), SRC / "tasks.py", SRC / "types.py"]:
        bad += [f"{path.name} imports {m}" for m in _imports(path) if m.startswith("modalign.workflows")]
    assert bad == []


def test_every_config_field_has_a_description():
    modules = [
        importlib.import_module(f"{config_module.__name__}.{m.name}")
        for m in pkgutil.iter_modules(config_module.__path__)
    ]
    classes = [
        cls
        for module in modules
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, BaseModel) and cls.__module__ == module.__name__
    ]
    assert ExperimentConfig in classes and TrainerConfig in classes  # the walk finds the schema
    missing = [
        f"{cls.__name__}.{name}"
        for cls in classes
        for name, field in cls.model_fields.items()
        if not field.description
    ]
    assert missing == []


def test_params_are_checked_against_constructors_before_data_is_read(tmp_path):
    import pytest

    from modalign.config import load_config
    from modalign.errors import ConfigError
    from modalign.workflows.train import run_training

    base = {
        "data": {"manifest": str(tmp_path / "does-not-exist.jsonl")},  # never opened
        "modalities": {"a": {"kind": "tabular"}, "b": {"kind": "tabular"}},
    }
    cases = {
        "modalities.a.encoder_params": (
            {"modalities": {**base["modalities"], "a": {"kind": "tabular", "encoder_params": {"hiden": 8}}}},
            "hidden",
        ),
        "objectives.0.params": (
            {"objectives": [{"name": "clip", "params": {"chunk_sise": 4}}]},
            "chunk_size",
        ),
        "fusion.params": (
            {"fusion": {"name": "concat", "params": {"hiden": 4}, "tasks": [{"name": "y"}]}},
            "hidden",
        ),
    }
    for where, (change, suggestion) in cases.items():
        cfg = load_config(raw={**base, **change})
        with pytest.raises(ConfigError, match=rf"{where}.*did you mean {suggestion}"):
            run_training(cfg, tmp_path / "run", show_progress=False)
    assert not (tmp_path / "run").exists()
