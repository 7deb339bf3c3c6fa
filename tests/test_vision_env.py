"""The timm/open_clip tests (tests/vision) run in their own environment, .venv-vision (torchvision
needs a torch it was built against, see scripts/setup_vision.sh): this test runs them there and
asserts they all passed. Without .venv-vision it skips, except in CI (``CI=true``), where it fails."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv-vision" / "bin" / "python"


def test_vision_tests_pass_in_vision_env() -> None:
    if not PYTHON.is_file():
        message = f"{PYTHON} is missing: bash scripts/setup_vision.sh creates it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        # the project's addopts already hold -q: reset them so the summary line is printed
        [
            str(PYTHON),
            "-m",
            "pytest",
            "tests/vision",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout[-4000:] + done.stderr[-2000:]
    assert done.returncode == 0, out
    summary = done.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), out
    assert "skipped" not in summary and "deselected" not in summary, out  # every vision test ran


def test_vision_encoders_without_their_packages_say_what_to_install(tmp_path: Path) -> None:
    from modalign.config import load_config
    from modalign.errors import ConfigError
    from modalign.workflows.build import build_sources

    try:
        import open_clip  # noqa: F401
    except Exception:  # noqa: BLE001  (missing, or torchvision built for another torch)
        pass
    else:
        pytest.skip("open_clip imports here: the missing-package error cannot happen")
    raw = {
        "data": {"manifest": "x.jsonl"},
        "modalities": {
            "image": {"kind": "image", "encoder": "open_clip_image", "encoder_params": {"model": "RN50"}}
        },
    }
    with pytest.raises(ConfigError, match=r"'open_clip'.*modalign\[vision\].*setup_vision\.sh"):
        build_sources(load_config(raw=raw))
