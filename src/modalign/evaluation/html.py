"""``report.html``: the metrics of ``report.json`` as tables and figures, one self-contained page.

Every metric is shown with its 95% bootstrap interval and its chance level (what a random ranking
or guess scores), so R@1 = 1.0 with ``match_on: label`` and 10 classes is read against a chance of
about 0.1. Figures are PNG data URIs and media are embedded: no external asset is loaded.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from modalign.io import atomic_write_bytes

_STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;"
    "text-align:right;vertical-align:top}th:first-child,td:first-child{text-align:left}"
    "small{color:#777}td.hit{outline:3px solid #2a2}td.miss{outline:3px solid #d33}"
    ".examples td{text-align:center;font-size:.8em}.examples audio{width:12em}img{max-width:100%}"
)
_RETRIEVAL = ("R@1", "R@5", "R@10", "MRR@10", "nDCG@10", "MAP@100", "median_rank", "mean_rank", "n_queries")
_GEOMETRY = ("gap", "centroid_cosine", "separability", "alignment", "cross_uniformity")


def write_html_report(path: Path, report: dict[str, Any], private: dict[str, Any]) -> None:
    """Write the page atomically.

    Args:
        report: the content of ``report.json`` (flat metrics, ``meta``, ``ci95``, ``chance``).
        private: what the page may also draw from: ``_evaluation`` (per-query values, confusion
            matrices), ``_embeddings`` (embeddings, presence, ids, keys, labels), ``_media``
            (``{id: {modality: (kind, value)}}``), ``_metrics_log`` (path of ``metrics.jsonl``).
    """
    meta = report.get("meta", {})
    metrics = {k: v for k, v in report.items() if k not in ("meta", "ci95", "chance")}
    ctx = _Context(metrics, report.get("ci95", {}), report.get("chance", {}))
    parts = [f"<h1>modalign report</h1>{_meta_table(meta)}"]
    parts += _retrieval_sections(ctx, private)
    parts += _zero_shot_sections(ctx, private)
    parts += _table_sections(ctx)
    for exp in meta.get("explanations", []):
        parts.append(_explanation(exp))
    log = _read_log(private.get("_metrics_log"))
    if log:
        from modalign.evaluation import report_plots as plots

        parts.append("<h2>Training</h2>" + _img(plots.loss_curves(log), "training and validation loss"))
    page = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>modalign report</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>\n"
    )
    atomic_write_bytes(path, page.encode())


class _Context:
    """Metric values with their intervals and chance levels, formatted for cells."""

    def __init__(self, metrics: dict[str, Any], ci: dict[str, Any], chance: dict[str, Any]) -> None:
        self.metrics, self.ci, self.chance = metrics, ci, chance

    def cell(self, key: str) -> str:
        v = self.metrics.get(key)
        text = _fmt(v)
        notes = []
        if key in self.ci:
            lo, hi = self.ci[key]
            notes.append(f"[{_fmt(lo)}, {_fmt(hi)}]")
        if key in self.chance:
            notes.append(f"chance {_fmt(self.chance[key])}")
        return text + (f"<br><small>{' · '.join(notes)}</small>" if notes else "")

    def groups(self, prefix: str) -> dict[str, dict[str, Any]]:
        """``prefix + group/rest`` keys as ``{group: {rest: value}}``."""
        out: dict[str, dict[str, Any]] = {}
        for k, v in self.metrics.items():
            if k.startswith(prefix):
                group, _, rest = k.removeprefix(prefix).partition("/")
                out.setdefault(group, {})[rest] = v
        return out

    def grid(self, prefix: str, cols: list[str], first: str) -> str:
        groups = self.groups(prefix)
        head = "".join(f"<th>{html.escape(c)}</th>" for c in [first, *cols])
        rows = "".join(
            f"<tr><td>{html.escape(g)}</td>"
            + "".join(f"<td>{self.cell(prefix + g + '/' + c)}</td>" for c in cols)
            for g in groups
        )
        return f"<table><tr>{head}</tr>{rows}</table>"


def _retrieval_sections(ctx: _Context, private: dict[str, Any]) -> list[str]:
    from modalign.evaluation import report_plots as plots

    groups = ctx.groups("retrieval/")
    if not groups:
        return []
    found = {c for g in groups.values() for c in g}
    cols = [c for c in _RETRIEVAL if c in found]
    parts = [
        "<h2>Retrieval</h2><p><small>R@k = fraction of queries with a positive in the top k "
        "(CLIP_benchmark's hit rate); [low, high] = 95% bootstrap interval over queries; chance = "
        "expected value under a random ranking; ranks are 1-based, ties go to the lower index."
        "</small></p>",
        ctx.grid("retrieval/", cols, "query → target"),
    ]
    extra = sorted(c for c in found if c.startswith(("precision@", "recall@")))
    if extra:
        parts.append(
            "<details><summary>precision@k and recall@k (sentence-transformers' definitions)</summary>"
            + ctx.grid("retrieval/", extra, "query → target")
            + "</details>"
        )
    ev, emb = private.get("_evaluation"), private.get("_embeddings")
    if ev is not None:
        ranks = {k.split("/")[1]: v for k, v in ev.per_query.items() if k.endswith("/median_rank")}
        parts.append(_img(plots.recall_curves(ranks), "Recall@k curves per direction"))
    if emb is not None:
        mods = list(emb["emb"])
        pairs = [(a, b) for i, a in enumerate(mods) for b in mods[i + 1 :]][:3]
        for a, b in pairs:
            qa, tb = emb["present"][a], emb["present"][b]
            qk = [k for k, p in zip(emb["keys"], qa) if p]
            tk = [k for k, p in zip(emb["keys"], tb) if p]
            fig = plots.similarity_histogram(emb["emb"][a][qa], emb["emb"][b][tb], qk, tk)
            parts.append(
                f"<h3>Similarities {html.escape(a)} ↔ {html.escape(b)}</h3>" + _img(fig, "histogram")
            )
        parts.append("<h3>Embeddings, 2-D PCA</h3>")
        parts.append(_img(plots.pca_projection(emb["emb"], emb["present"], emb.get("labels")), "PCA"))
        media = private.get("_media")
        if media:
            from modalign.evaluation.report_examples import examples_table

            for a, b in pairs[:2]:
                parts.append(examples_table(a, b, emb["emb"], emb["present"], emb["ids"], emb["keys"], media))
    return parts


def _zero_shot_sections(ctx: _Context, private: dict[str, Any]) -> list[str]:
    from modalign.evaluation import report_plots as plots

    parts = []
    zs = ctx.groups("zeroshot/")
    if zs:
        cols = [
            c
            for c in ("accuracy", "top5_accuracy", "mean_per_class_recall")
            if any(c in g for g in zs.values())
        ]
        parts += ["<h2>Zero-shot classification</h2>", ctx.grid("zeroshot/", cols, "modality")]
        ev = private.get("_evaluation")
        for m, (classes, matrix) in (ev.confusion if ev is not None else {}).items():
            parts.append(
                f"<h3>Confusion matrix: {html.escape(m)}</h3>" + _img(plots.confusion(classes, matrix), m)
            )
    lp = ctx.groups("linear_probe/")
    if lp:
        cols = ["lp_acc1", "lp_acc5", "lp_mean_per_class_recall", "weight_decay"]
        parts += ["<h2>Linear probe (frozen embeddings)</h2>", ctx.grid("linear_probe/", cols, "modality")]
    return parts


def _table_sections(ctx: _Context) -> list[str]:
    from modalign.evaluation import report_plots as plots

    parts = []
    geo = ctx.groups("geometry/")
    if geo:
        pairs = [g for g in geo if "-" in g]
        parts.append(
            "<h2>Embedding geometry</h2><p><small>gap = distance of the modality centroids (0 = none); "
            "separability = held-out accuracy of telling the modalities apart (0.5 = no gap); "
            "alignment = mean squared distance of pairs; uniformity: lower = more spread.</small></p>"
        )
        if pairs:
            cells = "".join(
                f"<tr><td>{html.escape(g)}</td>"
                + "".join(f"<td>{ctx.cell(f'geometry/{g}/{c}')}</td>" for c in _GEOMETRY)
                + "</tr>"
                for g in pairs
            )
            head = "".join(f"<th>{c}</th>" for c in ("pair", *_GEOMETRY))
            parts.append(f"<table><tr>{head}</tr>{cells}</table>")
        singles = [g for g in geo if "-" not in g]
        if singles:
            parts.append(_singles(ctx, singles))
    if ctx.groups("blind_pairs/"):
        parts.append(
            "<h2>CLIP-blind pairs</h2><p><small>pairs of items this model finds near-identical and the "
            "reference model different; score = % of pairs where both items' texts pick their own "
            "item (MMVP; chance 25).</small></p>"
            + ctx.grid("blind_pairs/", ["score", "n_pairs"], "items → texts")
        )
    pred = {k.removeprefix("predict/"): v for k, v in ctx.metrics.items() if k.startswith("predict/")}
    if pred:
        parts.append("<h2>Prediction</h2>" + _table(["metric", "value"], sorted(pred.items())))
    subsets = ctx.groups("robustness/subset/")
    if subsets:
        cols = sorted({c for g in subsets.values() for c in g})
        parts.append(
            "<h2>Robustness: modality subsets</h2>" + ctx.grid("robustness/subset/", cols, "modalities kept")
        )
    mcar = ctx.groups("robustness/mcar/")
    if mcar:
        uri, rates, names = plots.mcar_curve(mcar)
        table = _table(["rate", *names], [[r, *[mcar[r].get(m) for m in names]] for r in rates])
        parts.append("<h2>Robustness: missing completely at random</h2>" + _img(uri, "MCAR curve") + table)
    mnar = {
        k.removeprefix("robustness/mnar/"): v
        for k, v in ctx.metrics.items()
        if k.startswith("robustness/mnar/")
    }
    if mnar:
        parts.append("<h2>Robustness: label-dependent missingness (MNAR)</h2>")
        parts.append(_table(["metric", "value"], sorted(mnar.items())))
    corrupt = ctx.groups("robustness/corruption/")
    if corrupt:  # R@1 of each direction and zero-shot accuracy (report.json also has R@5, R@10)
        found = {c for g in corrupt.values() for c in g}
        cols = sorted(c for c in found if c.endswith("/R@1")) + sorted(
            c for c in found if c.startswith("zeroshot/")
        )
        parts.append(
            "<h2>Robustness: corrupted inputs</h2><p><small>R@1 per direction and zero-shot accuracy with "
            "one modality's inputs degraded; none = clean inputs.</small></p>"
            + ctx.grid("robustness/corruption/", cols, "corruption")
        )
    return parts


def _singles(ctx: _Context, modalities: list[str]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(m)}</td><td>{ctx.cell(f'geometry/{m}/uniformity')}</td></tr>"
        for m in modalities
    )
    return f"<table><tr><th>modality</th><th>uniformity</th></tr>{rows}</table>"


def _img(uri: str, alt: str) -> str:
    return f"<p><img alt='{html.escape(alt)}' src='{uri}'></p>" if uri else ""


def _read_log(path: Any) -> list[dict[str, Any]]:
    if path is None or not Path(path).is_file():
        return []
    out = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash
        if isinstance(row, dict) and "step" in row:
            out.append(row)
    return out


def format_seconds(seconds: float) -> str:
    """``42.3 s``, ``11 min 02 s``, ``3 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


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
    rows = []
    for k, v in meta.items():
        if isinstance(v, (list, dict)):
            continue
        if k == "train_seconds" and isinstance(v, (int, float)):
            v = format_seconds(float(v)) + " (training steps, all --resume segments)"
        rows.append((k, v))
    return _table(["run", ""], rows)


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
