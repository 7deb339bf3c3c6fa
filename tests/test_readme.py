"""The README's Python examples run as written, and every shipped config is listed in it.

Each example names the run it needs (``# needs runs/NAME: modalign train configs/NAME.yaml``). The
test makes that run as the README says, shortened (2 steps on a few rows of the same bundled data,
paths made absolute), in a folder laid out like the repository, then executes the block there.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from modalign.config import load_config
from modalign.data.manifest import ensure_extracted, read_manifest
from modalign.workflows.train import run_training

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
NEEDS = re.compile(r"^# needs runs/(\w+): modalign train configs/(\w+)\.yaml$", re.M)
ROWS_PER_SPLIT = 12


def _python_blocks() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", README, re.M | re.S)


def _few_rows(manifest: Path, out: Path) -> Path:
    """``ROWS_PER_SPLIT`` rows of each split, spread over it (every class shows up), their
    relative file paths made absolute."""
    m = read_manifest(manifest)
    by_split: dict[Any, list[dict[str, Any]]] = {}
    for row in m.rows:
        by_split.setdefault(row.get("split"), []).append(row)
    rows = []
    for split_rows in by_split.values():
        for row in split_rows[:: max(1, len(split_rows) // ROWS_PER_SPLIT)][:ROWS_PER_SPLIT]:
            absolute = {
                k: str(m.base_dir / v)
                for k, v in row.items()
                if isinstance(v, str) and "/" in v and (m.base_dir / v).is_file()
            }
            rows.append({**row, **absolute})
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _short_run(name: str, workdir: Path) -> None:
    """``modalign train configs/NAME.yaml`` into ``workdir/runs/NAME``: 2 steps, a few rows."""
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    manifest = ROOT / cfg.data.manifest
    ensure_extracted(manifest, None if cfg.data.archive is None else ROOT / cfg.data.archive)
    small = _few_rows(manifest, workdir / f"{name}.jsonl")
    sets = [
        f"data.manifest={small}",
        "trainer.max_steps=2",
        "trainer.batch_size=8",
        "trainer.warmup_steps=1",
        "eval.robustness.enabled=false",
    ]
    run_training(
        load_config(ROOT / "configs" / f"{name}.yaml", sets), workdir / "runs" / name, show_progress=False
    )


def test_every_python_example_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = _python_blocks()
    assert len(blocks) >= 2
    for link in ("data", "configs"):  # the repository's layout, the runs written here
        (tmp_path / link).symlink_to(ROOT / link)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        needs = NEEDS.findall(block)
        for run, config in needs:
            assert run == config  # `modalign train configs/X.yaml` writes runs/X
            # the README tells how to make the run
            assert f"modalign train configs/{config}.yaml" in README.split("```python")[0] + block
            if not (tmp_path / "runs" / run).exists():
                _short_run(config, tmp_path)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(block, "README.md", "exec"), {"__name__": "__readme__"})  # noqa: S102
        assert out.getvalue().strip(), block  # each example prints what it computes


def test_every_shipped_config_is_listed_with_what_it_shows() -> None:
    section = README.split("## Configs shipped", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `(\w+\.yaml)` \| (.+?) \|", section, re.M)
    shipped = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert sorted(name for name, _ in listed) == shipped
    assert all(len(what.split()) >= 8 for _, what in listed), listed  # a sentence, not a word
