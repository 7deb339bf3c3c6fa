"""Load the splits a run needs, with progress for the preprocessing pass (:class:`RowProgress`).

Before any file of a split is read, its ids must be unique (a repeated id would make id-matched
retrieval count a sample's twin as its match, up to R@1 = 1.0), and its labels and match keys must be
single values (a list cannot be a class or a key). A repeated id is refused whatever
``on_error`` says; a bad label is a bad row like any other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from modalign.data.dataset import ModalitySource, SampleSet, load_samples, split_rows
from modalign.data.manifest import Manifest, cell, ensure_extracted, is_missing, read_manifest
from modalign.data.progress import RowProgress
from modalign.errors import DataError

_SHOWN = 5  # duplicate ids named in an error message


def open_manifest(manifest: Path, archive: Path | None = None) -> Manifest:
    """Extract the archive first when it provides the manifest, then read it."""
    ensure_extracted(manifest, archive)
    return read_manifest(manifest)


def duplicate_ids(manifest: Manifest, rows: Sequence[int], id_column: str = "id") -> dict[str, list[int]]:
    """Id -> its row numbers, for every id that ``rows`` hold more than once.

    The id of a row is what a loaded sample gets: ``str(row[id_column])``, the row number when the
    column is absent.
    """
    seen: dict[str, list[int]] = {}
    for i in rows:
        seen.setdefault(str(manifest.rows[i].get(id_column, i)), []).append(i)
    return {k: v for k, v in seen.items() if len(v) > 1}


def label_errors(manifest: Manifest, rows: Sequence[int], columns: Sequence[str]) -> list[DataError]:
    """One error per row whose value in one of ``columns`` is not a single string, number or bool.

    Labels and match keys are compared and counted; a list or an object in such a column is a data
    bug (a multilabel task's column, which holds lists, is checked by its task instead).
    """
    errors = []
    for i in rows:
        for c in dict.fromkeys(columns):
            v = cell(manifest.rows[i], c)
            if not is_missing(v) and not isinstance(v, (str, int, float)):
                errors.append(
                    DataError(
                        f"label {v!r} is a {type(v).__name__}; a label or match key is one string or number",
                        reason="bad_label",
                        row=i,
                        column=c,
                    )
                )
                break
    return errors


def load_split(
    manifest: Manifest,
    sources: Sequence[ModalitySource],
    split: str | None,
    *,
    split_column: str = "split",
    id_column: str = "id",
    keep_columns: Sequence[str] = (),
    scalar_columns: Sequence[str] = (),
    on_error: str = "skip",
    required: bool = False,
    show_progress: bool = True,
) -> SampleSet:
    """Preprocess one split (every row when ``split`` is None) into a :class:`SampleSet`.

    Args:
        keep_columns: extra columns kept per sample (labels, match keys).
        scalar_columns: columns whose values must be single strings or numbers (labels, match
            keys); a row with a list there is skipped as ``bad_label`` (raised with ``on_error="fail"``).
        required: a split that selects no rows is an error (else an empty set is returned).

    Raises:
        DataError: ids repeat within the split (the first few named with their rows); ``required``
            and no row is in the split; rows were selected but every one was skipped (the message
            names the reasons and the columns the sources read).
    """
    rows = split_rows(manifest, split_column, split)
    if required and not rows:
        refuse_unselected(manifest, split, split_column)
    _refuse_duplicates(manifest, rows, id_column, split)
    bad = label_errors(manifest, rows, scalar_columns)
    if bad and on_error == "fail":
        raise bad[0]
    bad_rows = {e.row for e in bad}
    good = [i for i in rows if i not in bad_rows]
    with RowProgress(f"loading {split or 'all'}", len(good), enabled=show_progress) as update:
        out = load_samples(
            manifest,
            sources,
            good,
            id_column=id_column,
            keep_columns=keep_columns,
            on_error=on_error,
            progress=update,
        )
    if bad:
        out.skipped.update(Counter(e.reason for e in bad))
        out.errors = sorted(bad + out.errors, key=lambda e: e.row if e.row is not None else -1)[:20]
    if rows and not len(out):
        _refuse_empty(out, sources, split, len(rows))
    return out


def refuse_unselected(manifest: Manifest, split: str | None, split_column: str) -> None:
    """Raise the error of a required split that selects no rows (naming the values found)."""
    found = sorted({str(cell(r, split_column)) for r in manifest.rows})
    raise DataError(
        f"split {split!r} selects no rows (column {split_column!r} holds {found[:10]})",
        reason="empty_split",
        path=str(manifest.path),
    )


def _refuse_duplicates(manifest: Manifest, rows: Sequence[int], id_column: str, split: str | None) -> None:
    dups = duplicate_ids(manifest, rows, id_column)
    if not dups:
        return
    shown = [f"{k!r} (rows {', '.join(map(str, v))})" for k, v in list(dups.items())[:_SHOWN]]
    more = f" and {len(dups) - _SHOWN} more" if len(dups) > _SHOWN else ""
    raise DataError(
        f"duplicate ids in split {split or 'all'!r}: {', '.join(shown)}{more}; ids must be unique "
        "(several rows of one item, e.g. captions of one image: give each row its own id and match "
        "on a shared column with eval.match_on / --match-on)",
        reason="duplicate_id",
        column=id_column,
        path=str(manifest.path),
    )


def _refuse_empty(out: SampleSet, sources: Sequence[ModalitySource], split: str | None, n: int) -> None:
    columns = []
    for s in sources:
        t = s.transform
        columns += list(getattr(t, "numeric", ()) + getattr(t, "categorical", ())) or [s.column]
    reasons = ", ".join(f"{r}: {k}" for r, k in out.skipped.most_common())
    first = f"; first: {out.errors[0]}" if out.errors else ""
    raise DataError(
        f"split {split or 'all'!r} has no usable rows: all {n} were skipped ({reasons}){first}; "
        f"the model reads the columns {columns}",
        reason="no_usable_rows",
    )
