"""Read a manifest (JSONL, CSV or Parquet): one row per sample, one column per modality.

A missing value (null, the empty string, absent key, NaN) is ``None``: the modality is absent for that
row. Other columns, nested JSON included, are kept as they are and ignored unless a config names them.
"""

from __future__ import annotations

import csv
import json
import math
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modalign.errors import DataError


@dataclass(frozen=True)
class Manifest:
    """Rows of a manifest and the folder that relative file paths start from."""

    rows: list[dict[str, Any]]
    base_dir: Path
    path: Path

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]], base_dir: str | Path = ".") -> Manifest:
        """An in-memory manifest (benchmarks and notebooks need not write a file)."""
        base = Path(base_dir).resolve()
        return cls(list(rows), base, base / "<in-memory>")


def is_missing(value: Any) -> bool:
    """True for null, the empty string and float NaN.

    A whitespace-only string is *not* missing: it is reported as empty text (likely a data bug).
    """
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, float):
        return math.isnan(value)
    return False


def read_manifest(path: str | Path) -> Manifest:
    """Read ``path`` by its suffix (.jsonl/.json lines, .csv, .parquet).

    Raises:
        DataError: the file is missing, malformed (with the line number) or of an unknown type.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest not found", reason="missing_file", path=str(path))
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = _read_jsonl(path)
    elif suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = [dict(r) for r in csv.DictReader(f)]
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise DataError(
                "reading Parquet needs pyarrow: pip install 'modalign[parquet]'", path=str(path)
            ) from e
        rows = pq.read_table(path).to_pylist()
    else:
        raise DataError(
            f"unknown manifest type {suffix!r}; use .jsonl, .csv or .parquet",
            reason="wrong_type",
            path=str(path),
        )
    return Manifest(rows=rows, base_dir=path.parent.resolve(), path=path)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"line {line_no} is not valid JSON ({e.msg})",
                    reason="bad_manifest",
                    path=str(path),
                ) from None
            if not isinstance(row, dict):
                raise DataError(f"line {line_no} is not a JSON object", reason="bad_manifest", path=str(path))
            rows.append(row)
    return rows


def ensure_extracted(manifest: Path, archive: Path | None) -> None:
    """Extract ``archive`` next to itself when ``manifest`` does not exist yet.

    Extraction goes to a temporary folder that is renamed into place, so an interrupted extraction
    never leaves a half-written dataset. Members that would escape the folder are refused.
    """
    if manifest.exists() or archive is None:
        return
    if not archive.is_file():
        raise DataError("data archive not found", reason="missing_file", path=str(archive))
    target_parent = archive.parent
    tmp = target_parent / f".extract-{archive.name}"
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        for top in tmp.iterdir():
            dest = target_parent / top.name
            if not dest.exists():
                top.rename(dest)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"cannot extract archive: {e}", reason="bad_archive", path=str(archive)) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not manifest.exists():
        raise DataError(
            f"archive {archive} does not contain the manifest {manifest}",
            reason="missing_file",
            path=str(manifest),
        )
