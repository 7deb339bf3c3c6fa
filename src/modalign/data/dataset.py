"""Load the rows of one split into tensors, once, and collate batches from them.

Rows are preprocessed up front (transforms are deterministic), so training epochs read tensors from
memory. Bad rows are skipped and counted per reason (``on_error="skip"``) or raise a
:class:`DataError` naming row, column and file (``on_error="fail"``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from modalign.data.manifest import Manifest, cell, is_missing
from modalign.data.transforms import Transform
from modalign.errors import DataError
from modalign.types import Batch


@dataclass(frozen=True)
class ModalitySource:
    """Where a modality's payload is in a manifest row and how it is loaded."""

    name: str
    column: str
    transform: Transform

    def payload(self, row: dict[str, Any]) -> Any:
        """The raw payload of this modality in ``row``; None when missing.

        ``column`` may be a dotted path into nested objects (:func:`cell`). A tabular modality
        whose column holds an object takes it whole (the transform infers numeric and categorical
        fields from the training rows) or, with named features, reads each name inside that object
        first, then in the row (``numeric: [area_km2]`` or ``[tabular.area_km2]`` both work).
        """
        t = self.transform
        value = cell(row, self.column)
        if t.kind == "tabular":
            columns = getattr(t, "numeric", ()) + getattr(t, "categorical", ())
            if columns:
                inside = value if isinstance(value, dict) else {}
                values = {c: v if (v := cell(inside, c)) is not None else cell(row, c) for c in columns}
                return None if all(is_missing(v) for v in values.values()) else values
            if isinstance(value, dict) and all(is_missing(v) for v in value.values()):
                return None
        return None if is_missing(value) else value


@dataclass
class SampleSet:
    """Preprocessed samples of one split.

    Attributes:
        ids: sample ids. rows: their 0-based manifest row numbers.
        data: ``data[name][i]`` tensor, or None when absent.
        columns: kept extra columns (labels, match keys), ``columns[col][i]``.
        skipped: rows skipped per reason. errors: the first errors seen (for reports).
        collate_with: modality -> the transform that collates its stored rows when they are not
            what the modality's own transform makes (e.g. cached frozen-encoder features).
    """

    ids: list[str] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    data: dict[str, list[torch.Tensor | None]] = field(default_factory=dict)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    errors: list[DataError] = field(default_factory=list)
    collate_with: dict[str, Transform] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def present(self, name: str) -> torch.Tensor:
        return torch.tensor([x is not None for x in self.data[name]], dtype=torch.bool)


def split_rows(manifest: Manifest, split_column: str, split: str | None) -> list[int]:
    """Row numbers of ``split`` (every row when ``split`` is None or the column is absent)."""
    if split is None:
        return list(range(len(manifest.rows)))
    return [i for i, r in enumerate(manifest.rows) if cell(r, split_column) == split]


def absent_modalities(
    manifest: Manifest, sources: Sequence[ModalitySource], rows: Sequence[int]
) -> dict[str, float]:
    """Modality name -> fraction of ``rows`` where its payload is missing (1.0 = never present)."""
    n = max(len(rows), 1)
    return {s.name: sum(s.payload(manifest.rows[i]) is None for i in rows) / n for s in sources}


def check_presence(manifest: Manifest, sources: Sequence[ModalitySource], rows: Sequence[int]) -> list[str]:
    """Refuse a modality absent from every training row; warnings for those absent from > 50%.

    A modality never present would be fitted on nothing (a tokenizer without a vocabulary, mean 0 /
    std 1) and trained on nothing, and evaluation would report chance as if it were a result.

    Raises:
        DataError: naming each such modality, its column and the manifest.
    """
    absent = absent_modalities(manifest, sources, rows)
    columns = {s.name: s.column for s in sources}
    never = [m for m, f in absent.items() if f >= 1.0]
    if never:
        names = ", ".join(f"{m} (column {columns[m]!r})" for m in never)
        raise DataError(
            f"modality {names} is absent from every training row of {manifest.path}: check its "
            "column name (`column:` in the config; a dotted name such as `a.b` reads a nested field) "
            "and the split",
            reason="modality_never_present",
            column=columns[never[0]],
        )
    return [
        f"warning: modality {m} (column {columns[m]!r}) is absent from {f:.0%} of the training rows"
        for m, f in absent.items()
        if f > 0.5
    ]


def fit_transforms(manifest: Manifest, sources: Sequence[ModalitySource], rows: Sequence[int]) -> None:
    """Fit every transform on the present payloads of ``rows`` (the training split)."""
    for src in sources:
        payloads = [p for i in rows if (p := src.payload(manifest.rows[i])) is not None]
        try:
            src.transform.fit(payloads)
        except DataError as e:
            raise e.located(column=src.column) from None


def load_samples(
    manifest: Manifest,
    sources: Sequence[ModalitySource],
    rows: Sequence[int],
    *,
    id_column: str = "id",
    keep_columns: Sequence[str] = (),
    on_error: str = "skip",
    collect_all: bool = False,
    progress: Callable[[int], None] | None = None,
    tally: Counter[tuple[str, str]] | None = None,
) -> SampleSet:
    """Load and transform ``rows`` of the manifest.

    Args:
        on_error: "skip" counts bad rows per reason and leaves them out; "fail" raises the first
            :class:`DataError`.
        collect_all: keep every error in ``errors`` (for ``data check``), not only the first 20.
        progress: called with the number of rows done so far.
        tally: counts ``(modality, "present" | "absent" | "bad")`` over ``rows`` (for ``data check``).
    """
    out = SampleSet(data={s.name: [] for s in sources}, columns={c: [] for c in keep_columns})
    for n, i in enumerate(rows):
        row = manifest.rows[i]
        loaded, problems = _load_row(row, i, sources, manifest, tally)
        if not problems and all(v is None for v in loaded.values()):
            problems = [DataError("no modality is present", reason="no_modality", row=i)]
        if problems:
            if on_error == "fail":
                raise problems[0]
            out.skipped.update(p.reason for p in problems[:1])
            if collect_all or len(out.errors) < 20:
                out.errors.extend(problems if collect_all else problems[:1])
        else:
            out.ids.append(str(row.get(id_column, i)))
            out.rows.append(i)
            for name, value in loaded.items():
                out.data[name].append(value)
            for c in keep_columns:
                v = cell(row, c)
                out.columns[c].append(None if is_missing(v) else v)
        if progress is not None:
            progress(n + 1)
    return out


def _load_row(
    row: dict[str, Any],
    i: int,
    sources: Sequence[ModalitySource],
    manifest: Manifest,
    tally: Counter[tuple[str, str]] | None = None,
) -> tuple[dict[str, torch.Tensor | None], list[DataError]]:
    tally = Counter() if tally is None else tally
    loaded: dict[str, torch.Tensor | None] = {}
    problems: list[DataError] = []
    for src in sources:
        payload = src.payload(row)
        if payload is None:
            loaded[src.name] = None
            tally[src.name, "absent"] += 1
            continue
        try:
            loaded[src.name] = value = src.transform.load(payload, manifest.base_dir)
            tally[src.name, "present" if value is not None else "absent"] += 1
        except DataError as e:
            problems.append(e.located(row=i, column=src.column))
            tally[src.name, "bad"] += 1
    return loaded, problems


def collate(samples: SampleSet, indices: Sequence[int], sources: Sequence[ModalitySource]) -> Batch:
    """A :class:`Batch` of ``samples[indices]``; absent rows get each transform's placeholder."""
    inputs, present = {}, {}
    for src in sources:
        items = [samples.data[src.name][i] for i in indices]
        inputs[src.name] = samples.collate_with.get(src.name, src.transform).collate(items)
        present[src.name] = torch.tensor([x is not None for x in items], dtype=torch.bool)
    labels = {c: [v[i] for i in indices] for c, v in samples.columns.items()}
    return Batch(inputs=inputs, present=present, ids=[samples.ids[i] for i in indices], labels=labels)


def concat_samples(parts: Sequence[SampleSet]) -> SampleSet:
    """The rows of ``parts`` in order, in one set (modalities and columns of the first part)."""
    out = SampleSet(data={k: [] for k in parts[0].data}, columns={c: [] for c in parts[0].columns})
    for p in parts:
        out.ids += p.ids
        out.rows += p.rows
        for k, v in p.data.items():
            out.data[k] += v
        for c, v in p.columns.items():
            out.columns[c] += v
    return out
