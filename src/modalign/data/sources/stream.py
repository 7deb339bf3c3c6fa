"""Training rows streamed from the manifest: DataLoader workers load and transform each batch.

Memory stays bounded (the batches being prefetched, not the split), and the batches are exactly
those of the in-memory path: the trainer chooses the rows of every batch (the same seeded order),
this source only loads them. A row that fails to load is counted once in ``skipped`` by its reason.
In a training batch it enters as a row with every modality absent (the rows of every step are
planned before they are loaded, so every rank keeps the same number of rows and the objectives
ignore it); :meth:`StreamedSamples.full_batches` (validation) leaves it out and batches the rows
that load, which are then exactly the in-memory split's batches. Rows with bad labels are left out
before training, as in memory.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch.utils.data import DataLoader, Dataset

from modalign.data.dataset import (
    ModalitySource,
    SampleSet,
    collate,
    concat_samples,
    load_samples,
    split_rows,
)
from modalign.data.loading import duplicate_ids, label_errors, refuse_unselected
from modalign.data.manifest import Manifest, cell, is_missing
from modalign.data.sources._stacking import stack_rows, unstack_rows
from modalign.errors import DataError
from modalign.types import Batch

T = TypeVar("T")
U = TypeVar("U")


class StreamedSamples:
    """The rows of a training split, loaded on demand (``len`` and label ``columns`` without I/O).

    Args:
        rows: manifest row numbers (already filtered for duplicate ids and bad labels).
        workers: DataLoader worker processes (0 = load in the training process).
        prefetch: batches each worker loads ahead.
    """

    def __init__(
        self,
        manifest: Manifest,
        sources: Sequence[ModalitySource],
        rows: Sequence[int],
        *,
        id_column: str = "id",
        keep_columns: Sequence[str] = (),
        workers: int = 2,
        prefetch: int = 2,
    ):
        self.manifest, self.sources, self.rows = manifest, list(sources), list(rows)
        self.id_column, self.keep_columns = id_column, list(keep_columns)
        self.workers, self.prefetch = workers, prefetch
        self.excluded: Counter[str] = Counter()  # rows left out before training, per reason
        self.failed: dict[int, str] = {}  # position -> why it failed to load (once, whatever the epoch)
        self.ids: list[str] = []
        self.columns: dict[str, list[Any]] = {c: [] for c in keep_columns}
        for i in self.rows:  # one read per row (Arrow rows are built on access)
            row = manifest.rows[i]
            self.ids.append(str(row.get(id_column, i)))
            for c, values in self.columns.items():
                values.append(None if is_missing(v := cell(row, c)) else v)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def skipped(self) -> Counter[str]:
        """Rows left out per reason: before training, and those that failed to load (each once)."""
        return self.excluded + Counter(self.failed.values())

    def batches(self, plan: Iterator[tuple[T, list[int]]]) -> Iterator[tuple[T, Batch]]:
        """``(tag, batch of the listed positions)`` for every ``(tag, positions)`` of ``plan``, in order
        (a row that fails to load is in its batch with every modality absent)."""
        for tag, (batch, failed) in self._loaded(plan, self._collate):
            self._count(failed)
            yield tag, batch

    def full_batches(self, size: int) -> Iterator[Batch]:
        """Batches of ``size`` rows that load, in row order, the last partial one left out (all of
        them in one batch when fewer than ``size`` load): the batches of the same split loaded in
        memory, whose failed rows are left out before batching."""
        plan = ((None, list(range(k, min(k + size, len(self))))) for k in range(0, len(self), size))
        pending: list[SampleSet] = []
        whole = True
        for _, loaded in self._loaded(plan, _stacked):
            unstack_rows([part for _, part in loaded])
            self._count([(k, _reason(part)) for k, part in loaded if not len(part)])
            pending += [part for _, part in loaded if len(part)]
            while len(pending) >= size:
                whole = False
                rows = concat_samples(pending[:size])
                pending = pending[size:]
                yield collate(rows, list(range(size)), self.sources)
        if whole and pending:
            yield collate(concat_samples(pending), list(range(len(pending))), self.sources)

    def _loaded(
        self, plan: Iterator[tuple[T, list[int]]], collate_fn: Callable[[Any], U]
    ) -> Iterator[tuple[T, U]]:
        """``(tag, collate_fn([(position, one-sample set)...]))`` per ``plan`` entry, loaded by workers."""
        tags: deque[T] = deque()

        def positions() -> Iterator[list[int]]:
            for tag, idx in plan:
                tags.append(tag)  # the loader reads ahead; batches come back in plan order
                yield idx

        loader = DataLoader(
            _Rows(self),
            batch_sampler=positions(),  # type: ignore[arg-type]
            num_workers=self.workers,
            prefetch_factor=self.prefetch if self.workers > 0 else None,
            collate_fn=collate_fn,
            generator=torch.Generator(),  # its seed draw must not move the training RNG
        )
        for out in loader:
            yield tags.popleft(), out

    def _count(self, failed: Sequence[tuple[int, str]]) -> None:
        for k, reason in failed:
            self.failed.setdefault(k, reason)

    def load(self, k: int) -> SampleSet:
        """Position ``k`` of the split as a one-sample set (empty, with the reason, when it fails)."""
        return load_samples(
            self.manifest,
            self.sources,
            [self.rows[k]],
            id_column=self.id_column,
            keep_columns=self.keep_columns,
        )

    def _collate(self, parts: list[tuple[int, SampleSet]]) -> tuple[Batch, list[tuple[int, str]]]:
        rows = SampleSet(data={s.name: [] for s in self.sources}, columns={c: [] for c in self.keep_columns})
        failed = []
        for k, part in parts:
            ok = len(part) == 1
            if not ok:
                failed.append((k, _reason(part)))
            rows.ids.append(self.ids[k])
            rows.rows.append(self.rows[k])
            for name in rows.data:
                rows.data[name].append(part.data[name][0] if ok else None)  # failed: all absent
            for c in self.keep_columns:
                rows.columns[c].append(part.columns[c][0] if ok else None)
        return collate(rows, list(range(len(parts))), self.sources), failed


def _reason(part: SampleSet) -> str:
    """Why a row failed to load (its one-sample set is empty)."""
    return next(iter(part.skipped), "unreadable")


def _stacked(parts: list[tuple[int, SampleSet]]) -> list[tuple[int, SampleSet]]:
    stack_rows([part for _, part in parts])  # one tensor per modality to hand over, not one per row
    return parts


class _Rows(Dataset):  # type: ignore[type-arg]
    def __init__(self, samples: StreamedSamples):
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, k: int) -> tuple[int, Any]:
        return k, self.samples.load(k)


def stream_split(
    manifest: Manifest,
    sources: Sequence[ModalitySource],
    split: str | None,
    *,
    split_column: str = "split",
    id_column: str = "id",
    keep_columns: Sequence[str] = (),
    scalar_columns: Sequence[str] = (),
    on_error: str = "skip",
    workers: int = 2,
    show_progress: bool = False,
    required: bool = False,
) -> StreamedSamples:
    """The rows of ``split`` to stream, after the checks ``load_split`` makes without decoding.

    Duplicate ids raise, and so does a ``required`` split without rows; rows with a list-valued
    label are left out and counted (raised with ``on_error="fail"``). Media are only read while
    training or evaluating, batch by batch.
    """
    del show_progress  # nothing slow happens here
    rows = split_rows(manifest, split_column, split)
    if required and not rows:
        refuse_unselected(manifest, split, split_column)
    dups = duplicate_ids(manifest, rows, id_column)
    if dups:
        first = ", ".join(f"{k!r} (rows {', '.join(map(str, v))})" for k, v in list(dups.items())[:5])
        raise DataError(
            f"duplicate ids in split {split or 'all'!r}: {first}", reason="duplicate_id", column=id_column
        )
    bad = label_errors(manifest, rows, scalar_columns)
    if bad and on_error == "fail":
        raise bad[0]
    bad_rows = {e.row for e in bad}
    good = [i for i in rows if i not in bad_rows]
    if rows and not good:
        raise DataError(f"split {split or 'all'!r} has no usable rows: all {len(rows)} have bad labels")
    out = StreamedSamples(
        manifest, sources, good, id_column=id_column, keep_columns=keep_columns, workers=workers
    )
    out.excluded.update(e.reason for e in bad)
    return out
