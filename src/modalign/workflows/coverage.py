"""What each split holds per modality, and whether a run can use it, known before training starts.

Training fits on the train split (a modality never present there is refused by
:func:`modalign.data.dataset.check_presence`), selects weights on the validation split and is
evaluated on the test split. A test split without a usable row of some modality would crash or
score nothing after the whole run, so it is refused up front, by ``data check`` and by ``train``
(from the manifest before any file is read, and again once the files are loaded, when every one of
them may have been bad).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from modalign.config import ExperimentConfig
from modalign.data.dataset import ModalitySource, SampleSet, split_rows
from modalign.data.manifest import Manifest, cell, is_missing
from modalign.errors import DataError


@dataclass(frozen=True)
class SplitCoverage:
    """Rows of one split per modality.

    Attributes:
        split: the split's value in the manifest. rows: its rows.
        present, absent, bad: modality -> rows whose payload loads / is missing / fails to load
            (``bad`` is 0 when the files were not read).
        together: (a, b) -> rows where both modalities are present.
        labelled: label column -> rows with a label.
    """

    split: str
    rows: int
    present: dict[str, int]
    absent: dict[str, int]
    bad: dict[str, int] = field(default_factory=dict)
    together: dict[tuple[str, str], int] = field(default_factory=dict)
    labelled: dict[str, int] = field(default_factory=dict)


def manifest_coverage(
    manifest: Manifest,
    sources: Sequence[ModalitySource],
    split: str,
    rows: Sequence[int],
    label_columns: Sequence[str] = (),
    tally: Counter[tuple[str, str]] | None = None,
) -> SplitCoverage:
    """Coverage of ``rows`` from their payloads (no file read), or from a loading ``tally``."""
    flags = {s.name: [s.payload(manifest.rows[i]) is not None for i in rows] for s in sources}
    if tally is not None:
        present = {s.name: tally[s.name, "present"] for s in sources}
        absent = {s.name: tally[s.name, "absent"] for s in sources}
        bad = {s.name: tally[s.name, "bad"] for s in sources}
    else:
        present = {n: sum(f) for n, f in flags.items()}
        absent = {n: len(rows) - p for n, p in present.items()}
        bad = {n: 0 for n in flags}
    together = {
        (a, b): sum(x and y for x, y in zip(flags[a], flags[b])) for a, b in itertools.combinations(flags, 2)
    }
    labelled = {c: sum(not is_missing(cell(manifest.rows[i], c)) for i in rows) for c in label_columns}
    return SplitCoverage(split, len(rows), present, absent, bad, together, labelled)


def sample_coverage(samples: SampleSet, split: str, label_columns: Sequence[str] = ()) -> SplitCoverage:
    """Coverage of a loaded split (bad rows are already left out of it)."""
    flags = {n: [x is not None for x in xs] for n, xs in samples.data.items()}
    present = {n: sum(f) for n, f in flags.items()}
    together = {
        (a, b): sum(x and y for x, y in zip(flags[a], flags[b])) for a, b in itertools.combinations(flags, 2)
    }
    labelled = {c: sum(v is not None for v in samples.columns.get(c, [])) for c in label_columns}
    absent = {n: len(samples) - p for n, p in present.items()}
    return SplitCoverage(split, len(samples), present, absent, {}, together, labelled)


def task_columns(cfg: ExperimentConfig) -> list[str]:
    return [t.label_column for t in cfg.fusion.tasks] if cfg.fusion is not None else []


def split_coverage(
    cfg: ExperimentConfig, manifest: Manifest, sources: Sequence[ModalitySource]
) -> dict[str, SplitCoverage]:
    """Coverage of the configured validation and test splits, from the manifest alone."""
    d = cfg.data
    out = {}
    for role, split in (("val", d.val_split), ("test", d.test_split)):
        if split is not None:
            rows = split_rows(manifest, d.split_column, split)
            out[role] = manifest_coverage(manifest, sources, split, rows, task_columns(cfg))
    return out


def coverage_problems(
    cfg: ExperimentConfig, coverage: dict[str, SplitCoverage]
) -> tuple[list[DataError], list[str]]:
    """Errors (the run cannot use a split it needs) and warnings, for the ``val``/``test`` roles.

    Errors: a test split without any usable row of a modality (evaluation has nothing to score it
    on) or, for a prediction task, without one labelled row; ``trainer.select_best`` without
    validation rows. Warnings: a validation split without some modality; two modalities never
    present together in the test split (their id-matched retrieval has no query).
    """
    errors: list[DataError] = []
    warnings: list[str] = []
    columns = {name: cfg.column(name) for name in cfg.modalities}
    test, val = coverage.get("test"), coverage.get("val")
    if test is not None and test.rows:
        where = f"test split {test.split!r} (data.test_split)"
        fix = "move some such rows into it, or set data.test_split: null to train without a test evaluation"
        for m, n in test.present.items():
            if n == 0:
                why = f"{test.absent[m]} absent" + (f", {test.bad[m]} bad" if test.bad.get(m) else "")
                errors.append(
                    DataError(
                        f"modality {m} (column {columns[m]!r}) has no usable row in the {where} "
                        f"({why} of {test.rows}): evaluation after training would have nothing to "
                        f"score it on; {fix}",
                        reason="split_missing_modality",
                        column=columns[m],
                    )
                )
        for c, n in test.labelled.items():
            if n == 0:
                errors.append(
                    DataError(
                        f"no row of the {where} has a label in column {c!r}: the task cannot be "
                        f"scored; {fix}",
                        reason="split_missing_labels",
                        column=c,
                    )
                )
        if cfg.objectives and cfg.eval.match_on is None and not errors:
            for (a, b), n in test.together.items():
                if n == 0:
                    warnings.append(
                        f"warning: modalities {a} and {b} are never present together in the {where}: "
                        f"{a}<->{b} retrieval by id has no query (eval.match_on can match on a label)"
                    )
    if cfg.trainer.select_best and (val is None or val.rows == 0):
        errors.append(
            DataError(
                f"trainer.select_best needs validation rows, but data.val_split={cfg.data.val_split!r} "
                "selects none: name the validation split or set trainer.select_best: false",
                reason="empty_split",
            )
        )
    if val is not None and val.rows:
        warnings += [
            f"warning: modality {m} is absent from every row of the validation split {val.split!r}: "
            "the validation loss does not see it"
            for m, n in val.present.items()
            if n == 0
        ]
    return errors, warnings


def refuse(errors: list[DataError]) -> None:
    """Raise the first error, naming how many more there are."""
    if errors:
        first = errors[0]
        if len(errors) > 1:
            more = "; ".join(str(e) for e in errors[1:3])
            raise DataError(f"{first.detail}; also: {more}", reason=first.reason, column=first.column)
        raise first
