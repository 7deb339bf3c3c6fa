"""Write ``report.json`` and print a readable table of the metrics."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from modalign.io import atomic_write_bytes, atomic_write_json


def write_report(path: Path, metrics: dict[str, float], meta: dict[str, Any]) -> None:
    """``report.json``, ``report.html`` and ``per_query.npz`` beside it.

    ``report.json`` holds the flat metric keys, a ``meta`` object and, when ``meta`` carries an
    ``_evaluation`` (see :func:`~modalign.evaluation.evaluate.evaluate_model`), ``ci95``
    (``{key: [low, high]}``, bootstrap over queries) and ``chance`` (``{key: value}``).
    ``per_query.npz`` keeps every metric's per-query values for ``modalign compare``.
    """
    from modalign.evaluation.html import write_html_report

    private = {k: v for k, v in meta.items() if k.startswith("_")}
    meta = {k: v for k, v in meta.items() if not k.startswith("_")}
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
    report: dict[str, Any] = {**clean, "meta": meta}
    ev = private.get("_evaluation")
    if ev is not None and ev.per_query:
        from modalign.evaluation.uncertainty import bootstrap_ci

        report["ci95"] = {k: [lo, hi] for k, (lo, hi) in bootstrap_ci(ev.per_query).items()}
        report["chance"] = dict(ev.chance)
        write_per_query(path.with_name("per_query.npz"), ev.per_query)
    atomic_write_json(path, report)
    if "_metrics_log" not in private:  # a training run's log, beside the report or the model
        near = [path.parent / "metrics.jsonl"]
        if isinstance(meta.get("model"), str):
            near.append(Path(meta["model"]).parent / "metrics.jsonl")
        private["_metrics_log"] = next((p for p in near if p.is_file()), None)
    write_html_report(path.with_suffix(".html"), report, private)


def write_per_query(path: Path, per_query: dict[str, Any]) -> None:
    """Per-query values as an ``.npz`` (plain arrays, no pickles), written atomically."""
    import numpy as np

    buf = io.BytesIO()
    arrays: dict[str, Any] = {k: np.asarray(v) for k, v in per_query.items()}
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def read_per_query(path: Path) -> dict[str, Any]:
    """The arrays of :func:`write_per_query` (never unpickles); {} when the file is absent."""
    import numpy as np

    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def print_table(metrics: dict[str, float], title: str = "evaluation") -> None:
    """Retrieval as one row per ordered pair, then zero-shot, with Rich."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    pairs = sorted({k.split("/")[1] for k in metrics if k.startswith("retrieval/")})
    if pairs:
        found = {k.split("/")[2] for k in metrics if k.startswith("retrieval/")}
        # the printed table stays narrow: report.json and report.html have every metric
        cols = [c for c in retrieval_columns(found) if c.startswith(("R@", "MRR@", "median_rank"))]
        cols += ["n_queries"] if "n_queries" in found else []
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
    _prefix_table(console, metrics, "blind_pairs/", f"{title}: CLIP-blind pairs (MMVP score, chance 25)")
    zs = sorted(k for k in metrics if k.startswith("zeroshot/"))
    if zs:
        table = Table(title=f"{title}: zero-shot")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for k in zs:
            table.add_row(k, _fmt(metrics[k]))
        console.print(table)


def retrieval_columns(found: set[str]) -> list[str]:
    """Retrieval metric names in reading order: R@k by k, MRR, nDCG, MAP, ranks, the rest."""
    lead = ("MRR@", "nDCG@", "MAP@", "median_rank", "mean_rank", "precision@", "recall@")

    def key(c: str) -> tuple[int, int, str]:
        if c.startswith("R@"):
            return (0, int(c[2:]), c)
        group = next((i for i, p in enumerate(lead) if c.startswith(p)), len(lead))
        digits = "".join(ch for ch in c if ch.isdigit())
        return (1 + group, int(digits) if digits else 0, c)

    return sorted(found, key=key)


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
