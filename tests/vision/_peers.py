"""The vision peers (timm, open_clip) import torchvision, which imports only in .venv-vision
(scripts/setup_vision.sh); elsewhere every test of this directory skips, and
tests/test_vision_env.py runs them in that environment."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """Import ``module`` or skip the calling test module (any import failure, not only a missing one:
    a torchvision built for another torch raises RuntimeError)."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001  (see docstring)
        pytest.skip(
            f"{module} does not import here ({type(e).__name__}: {e}); these tests run in .venv-vision "
            "(bash scripts/setup_vision.sh)",
            allow_module_level=True,
        )
