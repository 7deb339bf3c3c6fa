"""``modalign data check``: read every row through the transforms and list every problem."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from modalign.config import ExperimentConfig
from modalign.data.dataset import check_presence, fit_transforms, load_samples, split_rows
from modalign.data.loading import duplicate_ids, label_errors, open_manifest
from modalign.data.manifest import Manifest, cell, is_missing
from modalign.data.progress import RowProgress
from modalign.errors import DataError
from modalign.workflows.coverage import SplitCoverage, coverage_problems, manifest_coverage, task_columns


def key_columns(cfg: ExperimentConfig) -> list[str]:
    """Columns whose values must be one string or number: ``data.label_column`` (zero-shot classes)
    and ``eval.match_on`` (retrieval keys). Task label columns are checked by their tasks."""
    return [c for c in dict.fromkeys((cfg.data.label_column, cfg.eval.match_on)) if c is not None]


@dataclass(frozen=True)
class CheckResult:
    """What ``data check`` found: every problem (sorted by row), warnings, and per split what
    training will see of each modality (:class:`SplitCoverage`, from loading every row)."""

    problems: list[DataError]
    warnings: list[str]
    coverage: list[SplitCoverage]
    n_rows: int


def check_manifest(path: Path, cfg: ExperimentConfig) -> tuple[list[DataError], int]:
    """Every problem of every row (all splits) and the number of rows (:func:`check_data`)."""
    result = check_data(path, cfg, show_progress=False)
    return result.problems, result.n_rows


def check_data(
    path: Path, cfg: ExperimentConfig, *, show_progress: bool = True, stream: TextIO | None = None
) -> CheckResult:
    """Read every row of every split through the transforms, as training would; nothing is written.

    Reads the manifest as training would (the config's archive is extracted first when ``path`` is
    the config's ``data.manifest``). Lists, sorted by row: repeated ids (each repeat, naming the
    row of the first), labels and match keys that are not single values, task labels outside their
    classes, and every row a transform cannot load (non-finite or non-numeric tabular values with
    their column). Transforms that learn state (tokenizer, statistics) are fitted in memory on the
    training split (or every row when the manifest has no such split); a transform that cannot be
    fitted is one problem and the others are still checked. A modality never present in training,
    and a test split without any usable row of a modality the model needs, are problems too
    (:func:`coverage_problems`): training refuses them before it starts.

    Args:
        show_progress: a progress bar per split in a terminal, plain lines elsewhere (on ``stream``).
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
    warnings: list[str] = []
    try:  # a modality never present in training is a problem
        warnings += check_presence(manifest, sources, rows)
    except DataError as e:
        problems.append(e)
    fitted = []
    for src in sources:
        try:
            fit_transforms(manifest, [src], rows)
            fitted.append(src)
        except DataError as e:
            problems.append(e.located(column=src.column))
    coverage = []
    labels = task_columns(cfg)
    for split, split_rows_ in _splits(manifest, d.split_column).items():
        tally: Counter[tuple[str, str]] = Counter()
        with RowProgress(f"checking {split}", len(split_rows_), show_progress, stream) as update:
            result = load_samples(
                manifest,
                fitted,
                split_rows_,
                id_column=d.id_column,
                on_error="skip",
                collect_all=True,
                progress=update,
                tally=tally,
            )
        # a row whose only modality could not be fitted is not empty: that problem is listed above
        problems += [e for e in result.errors if len(fitted) == len(sources) or e.reason != "no_modality"]
        coverage.append(manifest_coverage(manifest, fitted, split, split_rows_, labels, tally))
    by_split = {c.split: c for c in coverage}
    roles = {r: by_split[s] for r, s in (("val", d.val_split), ("test", d.test_split)) if s in by_split}
    if d.train_split not in by_split:  # training refuses it; the transforms were fitted on every row
        problems.append(
            DataError(
                f"data.train_split={d.train_split!r} selects no rows (column {d.split_column!r} holds "
                f"{sorted(by_split)[:10]}): training needs it",
                reason="empty_split",
            )
        )
    if d.test_split is not None and d.test_split not in by_split:
        problems.append(
            DataError(
                f"data.test_split={d.test_split!r} selects no rows (column {d.split_column!r}); name "
                "the test split, or set data.test_split: null to train without a test evaluation",
                reason="empty_split",
            )
        )
    errors, more = coverage_problems(cfg, roles)
    problems += errors
    warnings += more
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
    return CheckResult(problems, warnings, coverage, len(manifest.rows))


def _splits(manifest: Manifest, split_column: str) -> dict[str, list[int]]:
    """Split value -> its rows, in first-seen order (``(none)`` for rows without a split)."""
    out: dict[str, list[int]] = {}
    for i, row in enumerate(manifest.rows):
        v = cell(row, split_column)
        out.setdefault("(none)" if is_missing(v) else str(v), []).append(i)
    return out


def coverage_table(coverage: list[SplitCoverage]) -> list[str]:
    """Lines of a plain table: split, rows, then present/absent/bad per modality."""
    head = ["split", "rows", "modality", "present", "absent", "bad"]
    body = [
        [c.split, str(c.rows), m, str(c.present[m]), str(c.absent[m]), str(c.bad.get(m, 0))]
        for c in coverage
        for m in c.present
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    right = {1, 3, 4, 5}
    return [
        "  ".join(
            x.rjust(w) if i in right else x.ljust(w) for i, (x, w) in enumerate(zip(r, widths))
        ).rstrip()
        for r in [head, *body]
    ]


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
