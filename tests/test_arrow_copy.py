"""A Parquet manifest with media cells is memory-mapped from an Arrow copy, not read into memory.

Oracle: pyarrow's own reading of the file (``pq.read_table``) gives the same rows; what Arrow
allocates in its memory pool (``pa.total_allocated_bytes``) stays near zero for the memory-mapped
copy, where reading the Parquet file itself allocates at least its media bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from modalign.data.arrow_copy import CACHE_ENV, copy_path
from modalign.data.hf import parquet_rows
from modalign.errors import DataError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

ROWS, SIZE = 64, 64_000  # 4 MB of media bytes


def write_parquet(path: Path, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    media = [rng.bytes(SIZE) for _ in range(ROWS)]
    image = pa.array(
        [{"bytes": b, "path": f"{k}.png"} for k, b in enumerate(media)],
        type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]),
    )
    table = pa.table({"id": [f"s{k}" for k in range(ROWS)], "image": image, "label": list(range(ROWS))})
    pq.write_table(table, path, row_group_size=16)
    return media


def test_media_parquet_is_memory_mapped_and_reads_the_same_rows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    path = tmp_path / "m.parquet"
    media = write_parquet(path)
    base = pa.total_allocated_bytes()
    direct = pq.read_table(path)
    assert pa.total_allocated_bytes() - base >= ROWS * SIZE  # what reading Parquet itself holds
    del direct
    base = pa.total_allocated_bytes()
    rows = parquet_rows(str(path))
    assert pa.total_allocated_bytes() - base < ROWS * SIZE / 8  # the copy is mapped, not read
    copy = copy_path(path)
    assert copy.is_file() and copy.parent == tmp_path / "cache" / "parquet"
    assert len(rows) == ROWS
    for k in (0, 17, ROWS - 1):
        row = rows[k]
        assert (row["id"], row["label"]) == (f"s{k}", k)
        assert bytes(memoryview(row["image"].data)) == media[k] and row["image"].name == f"{k}.png"
    # a second open maps the same copy; a rewritten file gets a new one
    written = copy.stat().st_mtime_ns
    assert bytes(memoryview(parquet_rows(str(path))[5]["image"].data)) == media[5]
    assert copy.stat().st_mtime_ns == written
    new_media = write_parquet(path, seed=1)
    os.utime(path, ns=(written + 10**9, written + 10**9))
    assert copy_path(path) != copy
    assert bytes(memoryview(parquet_rows(str(path))[5]["image"].data)) == new_media[5]


def test_parquet_without_media_is_not_copied_and_a_bad_file_names_itself(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "text": ["x", "y"]}), plain)
    assert [r["text"] for r in parquet_rows(str(plain))] == ["x", "y"]
    assert not (tmp_path / "cache").exists()
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match="bad.parquet"):
        parquet_rows(str(bad))
