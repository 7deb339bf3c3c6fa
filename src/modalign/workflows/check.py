"""``modalign data check``: read every row through the transforms and list every problem."""

from __future__ import annotations

from pathlib import Path

from modalign.config import ExperimentConfig
from modalign.data.dataset import fit_transforms, load_samples, split_rows
from modalign.data.manifest import Manifest, read_manifest
from modalign.errors import DataError


def check_manifest(path: Path, cfg: ExperimentConfig) -> tuple[list[DataError], int]:
    """Every problem of every row (all splits) and the number of rows; nothing is written.

    Transforms that learn state (tokenizer, statistics) are fitted in memory on the training split
    (or every row when the manifest has no such split).
    """
    from modalign.workflows.build import build_sources, check_params

    check_params(cfg)
    manifest = read_manifest(path)
    sources = build_sources(cfg)
    rows = split_rows(manifest, cfg.data.split_column, cfg.data.train_split) or list(
        range(len(manifest.rows))
    )
    try:
        fit_transforms(manifest, sources, rows)
    except DataError as e:
        return [e], len(manifest.rows)
    result = load_samples(manifest, sources, range(len(manifest.rows)), on_error="skip", collect_all=True)
    return result.errors + _label_errors(manifest, cfg, rows), len(manifest.rows)


def _label_errors(manifest: Manifest, cfg: ExperimentConfig, train_rows: list[int]) -> list[DataError]:
    """Task labels outside the task's classes (given, or the training split's), one error per row."""
    if cfg.fusion is None:
        return []
    from modalign.tasks import encode_targets
    from modalign.workflows.build import build_fusion_spec

    columns = {t.label_column for t in cfg.fusion.tasks}
    try:
        spec = build_fusion_spec(cfg, {c: [manifest.rows[i].get(c) for i in train_rows] for c in columns})
    except DataError as e:
        return [e]
    assert spec is not None
    errors = []
    for i, row in enumerate(manifest.rows):
        try:
            encode_targets(spec.tasks, {c: [row.get(c)] for c in columns}, row_offset=i)
        except DataError as e:
            errors.append(e)
    return errors
