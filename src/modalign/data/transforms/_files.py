"""Resolving a manifest cell that names a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modalign.errors import DataError


def resolve_file(payload: Any, base_dir: Path) -> Path:
    """The existing file a path cell names (relative paths start at ``base_dir``)."""
    if not isinstance(payload, (str, Path)):
        raise DataError(f"expected a file path, got {type(payload).__name__}", reason="wrong_type")
    path = Path(payload)
    if not path.is_absolute():
        path = base_dir / path
    try:
        found = path.is_file()
    except (OSError, ValueError) as e:  # a name too long for the file system, a NUL byte
        raise DataError(
            f"not a usable file path ({e})", reason="missing_file", path=str(path)[:300]
        ) from None
    if not found:
        raise DataError("file not found", reason="missing_file", path=str(path))
    return path
