"""``report.html``: the metrics of ``report.json`` as tables and plots, one self-contained page.

Plots (matplotlib, Agg) are embedded as PNG data URIs so the file can be mailed or attached.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any

from modalign.io import atomic_write_bytes


def write_html_report(path: Path, report: dict[str, Any], private: dict[str, Any]) -> None:
    """Write the page atomically (retrieval, zero-shot, prediction, robustness, explanations).

    Args:
        report: the content of ``report.json`` (flat metrics, ``meta``, ``ci95``, ``chance``).
        private: what the page may also draw from (``_evaluation``, ``_embeddings``).
    """
    meta = report.get("meta", {})
    metrics = {k: v for k, v in report.items() if k not in ("meta", "ci95", "chance")}
    parts = [f"<h1>modalign report</h1>{_meta_table(meta)}"]
    retrieval = _split_keys(metrics, "retrieval/")
    if retrieval:
        parts.append("<h2>Retrieval</h2>" + _pivot(retrieval, "query → target"))
    for prefix, title in (("zeroshot/", "Zero-shot classification"), ("predict/", "Prediction")):
        rows = {k.removeprefix(prefix): v for k, v in metrics.items() if k.startswith(prefix)}
        if rows:
            parts.append(f"<h2>{title}</h2>" + _table(["metric", "value"], sorted(rows.items())))
    subsets = _split_keys(metrics, "robustness/subset/")
    if subsets:
        parts.append("<h2>Robustness: modality subsets</h2>" + _pivot(subsets, "modalities kept"))
    mcar = _split_keys(metrics, "robustness/mcar/")
    if mcar:
        parts.append("<h2>Robustness: missing completely at random</h2>" + _mcar_plot(mcar))
    mnar = {
        k.removeprefix("robustness/mnar/"): v for k, v in metrics.items() if k.startswith("robustness/mnar/")
    }
    if mnar:
        parts.append("<h2>Robustness: label-dependent missingness (MNAR)</h2>")
        parts.append(_table(["metric", "value"], sorted(mnar.items())))
    for exp in meta.get("explanations", []):
        parts.append(_explanation(exp))
    body = "\n".join(parts)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>modalign report</title>"
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
        "text-align:right}th:first-child,td:first-child{text-align:left}</style></head>"
        f"<body>{body}</body></html>\n"
    )
    atomic_write_bytes(path, page.encode())


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if not v.is_integer() else str(int(v))
    return html.escape(str(v))


def _table(header: list[str], rows: list[tuple[Any, ...]] | list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _meta_table(meta: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in meta.items() if not isinstance(v, (list, dict))]
    return _table(["run", ""], rows)


def _split_keys(metrics: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    """``prefix + group/rest`` keys as ``{group: {rest: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for k, v in metrics.items():
        if k.startswith(prefix):
            group, _, rest = k.removeprefix(prefix).partition("/")
            out.setdefault(group, {})[rest] = v
    return out


def _pivot(groups: dict[str, dict[str, Any]], first: str) -> str:
    cols = sorted({c for g in groups.values() for c in g})
    return _table([first, *cols], [[g, *[groups[g].get(c) for c in cols]] for g in groups])


def _mcar_plot(groups: dict[str, dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = sorted(groups, key=float)
    metrics = sorted({c for g in groups.values() for c in g if not c.endswith("missing_fraction")})
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for m in metrics:
        ax.plot([float(r) for r in rates], [groups[r].get(m, math.nan) for r in rates], marker="o", label=m)
    ax.set_xlabel("fraction of modalities dropped at random")
    ax.set_ylabel("metric")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()
    table = _table(["rate", *metrics], [[r, *[groups[r].get(m) for m in metrics]] for r in rates])
    return f"<img alt='MCAR curve' src='data:image/png;base64,{img}'>{table}"


def _explanation(exp: dict[str, Any]) -> str:
    steps = exp.get("steps", [])
    tasks = [k for k in (steps[0] if steps else {}) if k not in ("after", "evaluated")]
    rows = []
    for s in steps:
        after = "prior" if s["after"] is None else s["after"] + ("" if s["evaluated"] else " (absent)")
        rows.append([after, *[", ".join(f"{p:.3f}" for p in s[t]) for t in tasks]])
    return f"<h3>Per-step predictions: sample {html.escape(str(exp.get('id')))}</h3>" + _table(
        ["after step", *tasks], rows
    )
