"""Shared helpers of the pretrained-encoder benchmarks: the bundled icon manifest and tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def icon_rows() -> list[dict[str, Any]]:
    """Rows of the bundled icon manifest (extracted from data/mdi_icons.tar.gz on first use)."""
    from modalign.data.loading import open_manifest

    manifest = open_manifest(ROOT / "data/mdi_icons/pairs.jsonl", ROOT / "data/mdi_icons.tar.gz")
    return list(manifest.rows)


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A plain aligned text table."""
    cells = [header] + [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))) for c in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def write_json(path: str | None, figures: dict[str, Any]) -> None:
    if path is not None:
        Path(path).write_text(json.dumps(figures, indent=2) + "\n")
