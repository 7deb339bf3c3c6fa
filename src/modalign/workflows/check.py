"""``modalign data check``: read every row through the transforms and list every problem."""

from __future__ import annotations

from pathlib import Path

from modalign.config import ExperimentConfig
from modalign.data.dataset import check_presence, fit_transforms, load_samples, split_rows
from modalign.data.loading import duplicate_ids, label_errors, open_manifest
from modalign.data.manifest import Manifest, cell
from modalign.errors import DataError


def key_columns(cfg: ExperimentConfig) -> list[str]:
    """Columns whose values must be one string or number: ``data.label_column`` (zero-shot classes)
    and ``eval.match_on`` (retrieval keys). Task label columns are checked by their tasks."""
    return [c for c in dict.fromkeys((cfg.data.label_column, cfg.eval.match_on)) if c is not None]


def check_manifest(path: Path, cfg: ExperimentConfig) -> tuple[list[DataError], int]:
    """Every problem of every row (all splits) and the number of rows; nothing is written.

    Reads the manifest as training would (the config's archive is extracted first when ``path`` is
    the config's ``data.manifest``). Lists, sorted by row: repeated ids (each repeat, naming the
    row of the first), labels and match keys that are not single values, task labels outside their
    classes, and every row a transform cannot load (non-finite or non-numeric tabular values with
    their column). Transforms that learn state (tokenizer, statistics) are fitted in memory on the
    training split (or every row when the manifest has no such split); a transform that cannot be
    fitted is one problem and the others are still checked.
    """
    from modalign.workflows.build import build_sources, check_params

    check_params(cfg)
    d = cfg.data
    archive = d.archive if Path(path).resolve() == Path(d.manifest).resolve() else None
    manifest = open_manifest(Path(path), archive)
    sources = build_sources(cfg)
    every = range(len(manifest.rows))
    rows = split_rows(manifest, d.split_column, d.train_split) or list(every)
    problems: list[DataError] = []
    try:  # a modality never present in training is a problem; a warning is not
        check_presence(manifest, sources, rows)
    except DataError as e:
        problems.append(e)
    fitted = []
    for src in sources:
        try:
            fit_transforms(manifest, [src], rows)
            fitted.append(src)
        except DataError as e:
            problems.append(e.located(column=src.column))
    if fitted:
        result = load_samples(
            manifest, fitted, every, id_column=d.id_column, on_error="skip", collect_all=True
        )
        # a row whose only modality could not be fitted is not empty: that problem is listed above
        problems += [e for e in result.errors if len(fitted) == len(sources) or e.reason != "no_modality"]
    for key, found in duplicate_ids(manifest, every, d.id_column).items():
        problems += [
            DataError(
                f"duplicate id {key!r} (first at row {found[0]}); ids must be unique",
                reason="duplicate_id",
                row=r,
                column=d.id_column,
            )
            for r in found[1:]
        ]
    tasks = {t.label_column for t in cfg.fusion.tasks} if cfg.fusion is not None else set()
    problems += label_errors(manifest, every, [c for c in key_columns(cfg) if c not in tasks])
    problems += _label_errors(manifest, cfg, rows)
    problems.sort(key=lambda e: -1 if e.row is None else e.row)
    return problems, len(manifest.rows)


def _label_errors(manifest: Manifest, cfg: ExperimentConfig, train_rows: list[int]) -> list[DataError]:
    """Task labels outside the task's classes (given, or the training split's), one error per row."""
    if cfg.fusion is None:
        return []
    from modalign.tasks import encode_targets
    from modalign.workflows.build import build_fusion_spec

    columns = {t.label_column for t in cfg.fusion.tasks}
    try:
        spec = build_fusion_spec(cfg, {c: [cell(manifest.rows[i], c) for i in train_rows] for c in columns})
    except DataError as e:
        return [e]
    assert spec is not None
    errors = []
    for i, row in enumerate(manifest.rows):
        try:
            encode_targets(spec.tasks, {c: [cell(row, c)] for c in columns}, row_offset=i)
        except DataError as e:
            errors.append(e)
    return errors
