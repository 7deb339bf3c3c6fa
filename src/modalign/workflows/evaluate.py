"""``modalign eval``: a saved model + a manifest -> report.json and a printed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modalign.data.loading import load_split, open_manifest
from modalign.evaluation.evaluate import evaluate_model, manifest_prompts
from modalign.evaluation.report import print_table, write_report
from modalign.model import load


def run_eval(
    model_dir: Path,
    manifest_path: Path,
    *,
    split: str | None = "test",
    match_on: str | None = None,
    label_column: str | None = None,
    prompts_split: str | None = "train",
    split_column: str = "split",
    id_column: str = "id",
    ks: tuple[int, ...] = (1, 5, 10),
    out_dir: Path | None = None,
    show: bool = True,
    higher_order: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on ``split`` of a manifest; writes ``out_dir/report.json``."""
    model = load(model_dir)
    manifest = open_manifest(manifest_path)
    label_column = label_column if label_column is not None else match_on
    wanted = {match_on, label_column}
    if model.fusion_spec is not None:
        wanted |= {t.label_column for t in model.fusion_spec.tasks}
    keep = sorted(c for c in wanted if c is not None)
    samples = load_split(
        manifest,
        model.sources(),
        split,
        split_column=split_column,
        id_column=id_column,
        keep_columns=keep,
        show_progress=show,
    )
    text = next((m for m in model.modalities if model.specs[m].kind == "text"), None)
    prompts = None
    if label_column is not None and text is not None:
        prompts = manifest_prompts(
            manifest,
            split_column=split_column,
            split=prompts_split,
            text_column=model.specs[text].column,
            label_column=label_column,
        )
    metrics, extras = evaluate_model(
        model,
        samples,
        match_on=match_on,
        ks=ks,
        label_column=label_column,
        zeroshot_text=text,
        class_prompts=prompts,
        higher_order=higher_order,
    )
    for reason, n in samples.skipped.items():
        metrics[f"data/skipped/{split}/{reason}"] = float(n)
    if show:
        print_table(metrics, title=f"{split or 'all'} split")
    if out_dir is not None:
        meta = {
            "model": str(model_dir),
            "manifest": str(manifest_path),
            "split": split,
            "match_on": match_on or "id",
            "n_samples": len(samples),
        }
        write_report(Path(out_dir) / "report.json", metrics, {**meta, **extras})
    return metrics
