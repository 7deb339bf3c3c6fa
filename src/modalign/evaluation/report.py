"""Write ``report.json`` and print a readable table of the metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modalign.io import atomic_write_json


def write_report(path: Path, metrics: dict[str, float], meta: dict[str, Any]) -> None:
    """``report.json`` (flat metric keys plus a ``meta`` object) and ``report.html`` beside it."""
    from modalign.evaluation.html import write_html_report

    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    atomic_write_json(path, {**clean, "meta": meta})
    write_html_report(path.with_suffix(".html"), metrics, meta)


def print_table(metrics: dict[str, float], title: str = "evaluation") -> None:
    """Retrieval as one row per ordered pair, then zero-shot, with Rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    pairs = sorted({k.split("/")[1] for k in metrics if k.startswith("retrieval/")})
    if pairs:
        cols = sorted(
            {k.split("/")[2] for k in metrics if k.startswith("retrieval/")},
            key=lambda c: (not c.startswith("R@"), int(c[2:]) if c.startswith("R@") else 0, c),
        )
        table = Table(title=f"{title}: retrieval")
        table.add_column("query->target")
        for c in cols:
            table.add_column(c, justify="right")
        for p in pairs:
            table.add_row(p, *[_fmt(metrics.get(f"retrieval/{p}/{c}")) for c in cols])
        console.print(table)
    _prefix_table(console, metrics, "predict/", f"{title}: prediction")
    _prefix_table(
        console,
        {k: v for k, v in metrics.items() if k.endswith(("/accuracy", "/rmse"))},
        "robustness/mcar/",
        f"{title}: missing completely at random (rate/task/metric)",
    )
    zs = sorted(k for k in metrics if k.startswith("zeroshot/"))
    if zs:
        table = Table(title=f"{title}: zero-shot")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k in zs:
            table.add_row(k, _fmt(metrics[k]))
        console.print(table)


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.4f}" if not float(v).is_integer() else f"{int(v)}"


def _prefix_table(console: Any, metrics: dict[str, float], prefix: str, title: str) -> None:
    from rich.table import Table

    keys = [k for k in metrics if k.startswith(prefix)]
    if not keys:
        return
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k in keys:
        table.add_row(k.removeprefix(prefix), _fmt(metrics[k]))
    console.print(table)
