"""Resolving a manifest cell that names a file, or holds one (:class:`InlineFile`)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from modalign.errors import DataError


@dataclass(frozen=True, eq=False)
class InlineFile:
    """A file's bytes held in the data set itself (a Hugging Face ``Image``/``Audio`` cell).

    Attributes:
        data: the encoded file (PNG, FLAC, ...): ``bytes`` or any buffer (a memory-mapped Arrow
            buffer is read without a copy until the file is decoded).
        origin: where it is, for messages and keys: ``"DIR row 12 column image"``.
        name: the file's original path when the cell kept one (``"x.png"``), else None.
    """

    data: Any
    origin: str
    name: str | None = None

    def open(self) -> BinaryIO:
        return io.BytesIO(memoryview(self.data))

    @property
    def suffix(self) -> str:
        """The original name's suffix (lower case), ``.bin`` without one (decoders read the content)."""
        return (Path(self.name).suffix.lower() if self.name else "") or ".bin"

    def __str__(self) -> str:  # a key of the cell (feature cache), never its bytes
        return f"<inline file: {self.origin}" + (f" ({self.name})>" if self.name else ">")


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


def open_file(payload: Any, base_dir: Path) -> tuple[Path | BinaryIO, str]:
    """A file a cell names or holds, ready for a decoder, and its name for messages."""
    if isinstance(payload, InlineFile):
        return payload.open(), str(payload)
    path = resolve_file(payload, base_dir)
    return path, str(path)
