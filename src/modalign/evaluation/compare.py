"""``modalign compare``: runs side by side, seeds as mean ± std, paired-bootstrap differences.

Each compared entry is one setting: a directory holding ``report.json`` (a training run or an
``eval`` output), or several such directories joined by commas -- the seeds of one setting, shown
as mean ± std over seeds. Differences are against the first setting and paired over the queries
they share (the per-query values of ``per_query.npz``, averaged over a setting's seeds); a
difference whose 95% interval excludes 0 is marked ``*``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalign.errors import DataError
from modalign.evaluation.report import read_per_query
from modalign.evaluation.uncertainty import aggregate_seeds, paired_difference

# metrics shown by default, in this order (R@1, R@5, R@10 before the rest)
_ORDER = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10", "MAP@100", "median_rank", "mean_rank")
_ZERO_SHOT = ("accuracy", "top5_accuracy", "mean_per_class_recall")


@dataclass
class Setting:
    """One compared entry: its name, every seed's report and per-query values."""

    name: str
    reports: list[dict[str, Any]]
    per_query: list[dict[str, np.ndarray]]


def load_setting(spec: str) -> Setting:
    """A setting from ``DIR`` or ``DIR1,DIR2,...`` (seeds), each holding ``report.json``.

    Raises:
        DataError: a directory without a readable ``report.json``.
    """
    reports, per_query = [], []
    for part in [p for p in spec.split(",") if p]:
        path = Path(part)
        report_path = path if path.suffix == ".json" else path / "report.json"
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DataError(
                f"{report_path}: cannot read the report ({e}); run modalign train or eval first"
            ) from e
        if not isinstance(report, dict):
            raise DataError(f"{report_path}: not a modalign report (a JSON object expected)")
        reports.append(report)
        per_query.append(read_per_query(report_path.with_name("per_query.npz")))
    if not reports:
        raise DataError(f"no run directory in {spec!r}")
    return Setting(spec, reports, per_query)


def default_keys(settings: list[Setting]) -> list[str]:
    """Retrieval and zero-shot metric keys present in every setting, in reading order."""
    common = set.intersection(*[{k for r in s.reports for k in r} for s in settings])

    def rank(key: str) -> tuple[str, int]:
        group, _, metric = key.rpartition("/")
        order = _ORDER if key.startswith("retrieval/") else _ZERO_SHOT
        return (group, order.index(metric))

    keys = [
        k
        for k in common
        if (k.startswith("retrieval/") and k.rpartition("/")[2] in _ORDER)
        or (k.startswith("zeroshot/") and k.rpartition("/")[2] in _ZERO_SHOT)
    ]
    return sorted(keys, key=rank)


def compare(settings: list[Setting], keys: list[str] | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """One row per metric: each setting's value (mean, std, seeds) and, from the second setting on,
    the paired difference to the first (``diff``, ``ci_low``, ``ci_high``, ``significant``) or
    None where per-query values are missing or the evaluations differ (manifest, split, match
    column or sample count in ``meta``): a paired test needs the same queries and positives."""
    keys = keys if keys is not None else default_keys(settings)
    same_queries = [_evaluated_on(s) == _evaluated_on(settings[0]) for s in settings]
    rows = []
    for key in keys:
        values = [aggregate_seeds(s.reports).get(key) for s in settings]
        pq = [_mean_per_query(s, key) for s in settings]
        diffs: list[dict[str, Any] | None] = [None]
        for b, same in zip(pq[1:], same_queries[1:]):
            a = pq[0]
            ok = same and a is not None and b is not None and a.shape == b.shape
            diffs.append(paired_difference(a, b, key, seed=seed) if ok else None)  # type: ignore[arg-type]
        chance = settings[0].reports[0].get("chance", {}).get(key)
        rows.append({"key": key, "values": values, "diffs": diffs, "chance": chance})
    return rows


def _evaluated_on(setting: Setting) -> tuple[object, ...]:
    """What the queries and positives were: manifest, split and match column of the first seed."""
    meta = setting.reports[0].get("meta", {})
    return tuple(meta.get(k) for k in ("manifest", "split", "match_on", "n_samples", "n_test"))


def _mean_per_query(setting: Setting, key: str) -> np.ndarray | None:
    """Per-query values averaged over the setting's seeds (None if a seed lacks them)."""
    arrays = [pq.get(key) for pq in setting.per_query]
    if any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:  # type: ignore[union-attr]
        return None
    stacked = np.stack(arrays)  # type: ignore[arg-type]
    if key.endswith("mean_per_class_recall"):  # (n, 2) rows of (hit, class): average the hits only
        out = stacked[0].copy()
        out[:, 0] = stacked[:, :, 0].mean(0)
        return out
    return stacked.mean(0)


def print_comparison(settings: list[Setting], rows: list[dict[str, Any]]) -> None:
    """The rows as a Rich table: value ± std per setting, Δ [95% CI] vs the first, * significant."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="comparison (Δ vs the first; * = 95% paired-bootstrap interval excludes 0)")
    table.add_column("metric")
    table.add_column("chance", justify="right")
    for i, s in enumerate(settings):
        seeds = len(s.reports)
        table.add_column(s.name + (f" ({seeds} seeds)" if seeds > 1 else ""), justify="right")
        if i:
            table.add_column(f"Δ {i}", justify="right")
    for row in rows:
        cells = [row["key"], _num(row["chance"])]
        for i, (v, d) in enumerate(zip(row["values"], row["diffs"])):
            cells.append("-" if v is None else _num(v[0]) + (f" ± {_num(v[1])}" if v[2] > 1 else ""))
            if i:
                cells.append("-" if d is None else _diff(d))
        table.add_row(*cells)
    Console().print(table)


def _num(v: float | None) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"


def _diff(d: dict[str, Any]) -> str:
    mark = "*" if d["significant"] else " "
    return f"{d['diff']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]{mark}"
