"""Hugging Face ``datasets`` data and Parquet files as manifests: Arrow rows read on access.

``data.manifest`` may name a directory written by ``Dataset.save_to_disk`` (it holds
``state.json`` and ``dataset_info.json``) or ``DatasetDict.save_to_disk`` (``dataset_dict.json``):
it is opened with ``datasets.load_from_disk``, whose Arrow files are memory-mapped, and each row is
built when it is asked for (:class:`ArrowRows`), so neither the rows nor their media are held in
memory (a streamed source reads only the rows of its batches). A DatasetDict's rows are its
splits' rows in the order of ``dataset_dict.json``, numbered across them, with the split's name in
the ``split`` column. A Parquet file with ``Image``/``Audio`` cells is memory-mapped from an Arrow
copy written once to the cache (:mod:`modalign.data.arrow_copy`); other Parquet manifests are read
with pyarrow into Arrow memory; both are rowed the same way.

Cells become the payloads the transforms take:

- an ``Image``/``Audio`` value (a struct of ``bytes`` and ``path``, also in a plain Parquet file):
  its bytes as an :class:`~modalign.data.transforms._files.InlineFile` (a zero-copy view of the
  Arrow buffer), or, without bytes, its path (relative paths start at the dataset's directory);
  null or both empty = absent;
- a decoded audio struct ``{"array": [...], "sampling_rate": N}``: ``(array, N)``;
- everything else as ``to_pylist`` gives it (strings, numbers, lists, nested dicts).

``datasets`` is imported only here, lazily, with the hub offline switches set.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from modalign.data.arrow_copy import mapped_table, unreadable_parquet
from modalign.data.transforms._files import InlineFile
from modalign.errors import DataError, OutputError

DICT_MARKER = "dataset_dict.json"
DATASET_MARKERS = ("state.json", "dataset_info.json")
SPLIT_COLUMN = "split"  # a DatasetDict's split names go here


def is_saved_dataset(path: Path) -> bool:
    """True for a directory written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return (path / DICT_MARKER).is_file() or all((path / m).is_file() for m in DATASET_MARKERS)


class ArrowRows(Sequence[dict[str, Any]]):
    """The rows of Arrow tables as dicts, each built when it is read.

    Args:
        parts: ``(split name or None, table)``; a named part adds its name as the ``split`` column.
        origin: the data set's path, for messages.
        reopen: rebuilds these rows in another process (pickling sends it, never the tables).
    """

    def __init__(self, parts: Sequence[tuple[str | None, Any]], origin: str, reopen: Callable[[], ArrowRows]):
        self.origin, self._reopen = origin, reopen
        self._batches: list[tuple[str | None, Any]] = []
        self._starts: list[int] = []
        n = 0
        for split, table in parts:
            if split is not None and SPLIT_COLUMN in table.column_names:
                raise DataError(
                    f"split {split!r} of the DatasetDict holds a column {SPLIT_COLUMN!r}: the "
                    "DatasetDict's split names go there; rename or remove it",
                    reason="bad_manifest",
                    column=SPLIT_COLUMN,
                    path=origin,
                )
            for batch in table.to_batches():  # zero-copy views of the (memory-mapped) table
                if batch.num_rows:
                    self._batches.append((split, batch))
                    self._starts.append(n)
                    n += batch.num_rows
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, i: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, i: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, i: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"row {i} of {self._n}")
        b = bisect.bisect_right(self._starts, i) - 1
        split, batch = self._batches[b]
        return self._rows(split, batch.slice(i - self._starts[b], 1), i)[0]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for (split, batch), start in zip(self._batches, self._starts):
            for k in range(0, batch.num_rows, 1024):  # plain cells of 1024 rows at a time
                yield from self._rows(split, batch.slice(k, 1024), start + k)

    def __reduce__(self) -> tuple[Any, ...]:
        return _call, (self._reopen,)

    def _rows(self, split: str | None, batch: Any, first: int) -> list[dict[str, Any]]:
        """Rows ``first, first + 1, ...`` of ``batch`` (a slice) as dicts."""
        rows: list[dict[str, Any]] = [{} for _ in range(batch.num_rows)]
        for name, column in zip(batch.schema.names, batch.columns):
            kind = _cell_kind(column.type)
            if kind == "media":
                values = [self._media(s, first + j, name) for j, s in enumerate(column)]
            elif kind == "audio_array":
                values = [_audio_array(s) for s in column]
            else:
                values = column.to_pylist()
            for row, value in zip(rows, values):
                row[name] = value
        if split is not None:
            for row in rows:
                row[SPLIT_COLUMN] = split
        return rows

    def _media(self, scalar: Any, row: int, column: str) -> Any:
        """An Image/Audio struct cell -> InlineFile (its bytes), its path, or None."""
        if not scalar.is_valid:
            return None
        data, path = scalar["bytes"], scalar["path"].as_py()
        if data.is_valid:
            return InlineFile(data.as_buffer(), f"{self.origin} row {row} column {column}", path or None)
        return path or None


@functools.lru_cache(maxsize=256)  # Arrow types hash by value; a schema has few
def _cell_kind(t: Any) -> str:
    """``media`` for a struct of bytes + path, ``audio_array`` for array + sampling_rate, else ``plain``."""
    import pyarrow as pa

    if not pa.types.is_struct(t):
        return "plain"
    fields = {t.field(k).name: t.field(k).type for k in range(t.num_fields)}
    if fields.keys() == {"bytes", "path"} and (
        pa.types.is_binary(fields["bytes"]) or pa.types.is_large_binary(fields["bytes"])
    ):
        return "media"
    if fields.keys() == {"array", "sampling_rate"}:
        return "audio_array"
    return "plain"


def _audio_array(scalar: Any) -> tuple[np.ndarray, Any] | None:
    if not scalar.is_valid or not scalar["array"].is_valid:
        return None
    samples = scalar["array"].values.to_numpy(zero_copy_only=False)
    return np.array(samples, dtype=np.float32), scalar["sampling_rate"].as_py()  # a writable copy


def _call(f: Callable[[], ArrowRows]) -> ArrowRows:
    return f()


def saved_dataset_rows(path: str) -> ArrowRows:
    """The rows of a ``save_to_disk`` directory (memory-mapped; see the module docstring).

    Raises:
        ConfigError: ``datasets`` is not installed (names the extra).
        DataError: the directory is not a readable saved dataset.
    """
    from modalign.offline import offline_import

    datasets = offline_import("datasets", extra="hf", what="a Hugging Face dataset directory")
    try:
        loaded = datasets.load_from_disk(path, keep_in_memory=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"cannot load the saved Hugging Face dataset ({e})", reason="bad_manifest", path=path
        ) from None
    named = isinstance(loaded, datasets.DatasetDict)
    parts = list(loaded.items()) if named else [(None, loaded)]
    tables = [(split, _table(ds)) for split, ds in parts]
    return ArrowRows(tables, path, functools.partial(saved_dataset_rows, path))


def _table(ds: Any) -> Any:
    """The dataset's Arrow table in row order (an indices mapping is applied, which copies)."""
    if ds._indices is not None:  # select/shuffle before saving leave none; kept for safety
        ds = ds.flatten_indices(keep_in_memory=True)
    return ds.data.table


def parquet_rows(path: str) -> ArrowRows:
    """The rows of a Parquet file: memory-mapped from an Arrow copy when it has media cells
    (:mod:`modalign.data.arrow_copy`), else read into Arrow memory.

    Raises:
        DataError: pyarrow is missing, or the file is corrupt or not Parquet.
    """
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError("reading Parquet needs pyarrow: pip install 'modalign[parquet]'", path=path) from e
    try:
        schema = pq.read_schema(path)
        media = any(_cell_kind(field.type) != "plain" for field in schema)
        table = mapped_table(Path(path)) if media else pq.read_table(path)
    except OutputError:  # the Arrow copy could not be written (an OSError too)
        raise
    except (pa.ArrowException, OSError, ValueError) as e:
        raise unreadable_parquet(Path(path), e) from None
    return ArrowRows([(None, table)], path, functools.partial(parquet_rows, path))
