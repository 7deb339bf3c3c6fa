"""Read a manifest (JSONL, CSV or Parquet): one row per sample, one column per modality.

A missing value (null, the empty string, absent key, NaN) is ``None``: the modality is absent for that
row. Other columns, nested JSON included, are kept as they are and ignored unless a config names them.
A config names a field of a nested object (a JSON object in JSONL, a struct column in Parquet) with a
dotted column, ``spoken_description.fr``; a key that itself holds the dot (``{"a.b": ...}``) wins
over the path (see :func:`cell`).
Text manifests are UTF-8 (a leading byte-order mark is allowed); anything else is a
:class:`DataError` naming the byte offset and line.

File paths in a manifest: a relative path starts at the manifest's folder; absolute paths, ``..``
and symlinks are followed as given. The manifest is trusted like the config (it is read with the
permissions of whoever runs the training). Code that serves files to others (an HTTP service over a
corpus) must not follow that rule: it confines every path with :func:`resolve_inside`, which resolves
symlinks and refuses anything outside the corpus root.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modalign.errors import DataError


@dataclass(frozen=True)
class Manifest:
    """Rows of a manifest and the folder that relative file paths start from."""

    rows: Sequence[dict[str, Any]]  # a list, or Arrow rows built on access (:mod:`modalign.data.hf`)
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


def cell(row: dict[str, Any], column: str) -> Any:
    """The value of ``column`` in ``row``; None when absent.

    ``column`` is a key of the row or, when the row has no such key, a dotted path into nested
    objects: ``"a.b"`` reads ``row["a"]["b"]``. A literal key wins, so a CSV header ``a.b`` (CSV has
    no nesting) and a JSON key with a dot read as they always did.
    """
    if column in row:
        return row[column]
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def read_manifest(path: str | Path) -> Manifest:
    """Read ``path`` by its suffix (.jsonl/.json lines, .csv, .parquet), or a directory written by a
    Hugging Face ``save_to_disk`` (:mod:`modalign.data.hf`; its folder is the base of relative paths).

    Raises:
        DataError: the file is missing, not UTF-8 (with the byte offset), malformed (with the line
            number), a corrupt Parquet file or of an unknown type.
    """
    path = Path(path)
    if path.is_dir():
        from modalign.data.hf import is_saved_dataset, saved_dataset_rows

        if not is_saved_dataset(path):
            raise DataError(
                "a directory manifest must be a Hugging Face dataset saved with save_to_disk "
                "(dataset_dict.json, or state.json and dataset_info.json); give a .jsonl, .csv or "
                ".parquet file otherwise",
                reason="wrong_type",
                path=str(path),
            )
        return Manifest(rows=saved_dataset_rows(str(path)), base_dir=path.resolve(), path=path)
    if not path.is_file():
        raise DataError("manifest not found", reason="missing_file", path=str(path))
    suffix = path.suffix.lower()
    rows: Sequence[dict[str, Any]]
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = _read_jsonl(path)
    elif suffix == ".csv":
        rows = _read_csv(path)
    elif suffix == ".parquet":
        rows = _read_parquet(path)
    else:
        raise DataError(
            f"unknown manifest type {suffix!r}; use .jsonl, .csv or .parquet",
            reason="wrong_type",
            path=str(path),
        )
    return Manifest(rows=rows, base_dir=path.parent.resolve(), path=path)


def _read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark (which is dropped)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(
            f"cannot read manifest: {e.strerror or e}", reason="missing_file", path=str(path)
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"not UTF-8: byte 0x{data[e.start]:02x} at byte offset {e.start} (line {line}); "
            "save the manifest as UTF-8",
            reason="bad_encoding",
            path=str(path),
        ) from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    # Only "\n" ends a line: JSON strings may hold other line separators (U+2028, \x1c) verbatim.
    for line_no, line in enumerate(_read_text(path).split("\n"), start=1):
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
        except RecursionError:
            raise DataError(
                f"line {line_no} nests JSON too deeply", reason="bad_manifest", path=str(path)
            ) from None
        if not isinstance(row, dict):
            raise DataError(f"line {line_no} is not a JSON object", reason="bad_manifest", path=str(path))
        rows.append(row)
    return rows


def _read_csv(path: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""))
    rows = []
    try:
        for row in reader:
            extra = row.pop(None, None)  # DictReader's key for the fields past the header's
            if extra is not None and any(v.strip() for v in extra):  # trailing commas are harmless
                raise DataError(
                    f"line {reader.line_num} has {len(reader.fieldnames or []) + len(extra)} fields, "
                    f"the header {len(reader.fieldnames or [])} (an unquoted comma?)",
                    reason="bad_manifest",
                    path=str(path),
                )
            rows.append(dict(row))
    except csv.Error as e:
        raise DataError(
            f"line {reader.line_num} is not valid CSV ({e})", reason="bad_manifest", path=str(path)
        ) from None
    return rows


def _read_parquet(path: Path) -> Sequence[dict[str, Any]]:
    from modalign.data.hf import parquet_rows

    return parquet_rows(str(path))


def resolve_inside(payload: str | Path, root: str | Path) -> Path:
    """The real path a manifest cell names, refused unless it is inside ``root``.

    For code that serves files to others: relative paths start at ``root``, then symlinks and
    ``..`` are resolved and the result must lie under ``root`` (itself resolved). Training and
    evaluation do not use it (see the module docstring).

    Raises:
        DataError: ``reason="outside_root"`` for a path (or a symlink target) outside ``root``.
    """
    base = Path(root).resolve()
    path = Path(payload)
    real = (path if path.is_absolute() else base / path).resolve()
    if not real.is_relative_to(base):
        raise DataError(
            f"path {str(payload)!r} is outside the corpus root {base}",
            reason="outside_root",
            path=str(real),
        )
    return real


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
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:  # gzip: EOFError, zlib.error
        raise DataError(f"cannot extract archive: {e}", reason="bad_archive", path=str(archive)) from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not manifest.exists():
        raise DataError(
            f"archive {archive} does not contain the manifest {manifest}",
            reason="missing_file",
            path=str(manifest),
        )
