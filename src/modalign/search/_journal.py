"""The index's append-only journal (write-ahead log) of changes made since the last snapshot.

A record is ``MAGIC (4 bytes) | payload length (u32) | crc32 of payload (u32) | payload``. Each
change is one record, appended and fsynced before the change is acknowledged. A crash can only
tear the last record (it was being appended); :func:`scan` stops at the first record that is
incomplete or fails its checksum, and the writer truncates the file there before appending again,
so records written after a torn one are never hidden behind it.

A payload is a JSON header (``{"op": "add", "ids": [...], "metadata": [...], "rows": n}`` or
``{"op": "delete", "ids": [...]}``), a newline, then for ``add`` the float32 vectors' bytes.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

MAGIC = b"MAJ1"
_HEADER = struct.Struct("<4sII")  # magic, payload length, crc32


@dataclass(frozen=True)
class Change:
    """One journalled change: ``op`` is ``add`` (with vectors ``(n, D)``) or ``delete``."""

    op: str
    ids: list[str]
    metadata: list[dict[str, Any]] | None = None
    vectors: np.ndarray | None = None


def encode(change: Change) -> bytes:
    """The bytes of one record holding ``change``."""
    header: dict[str, Any] = {"op": change.op, "ids": change.ids}
    body = b""
    if change.op == "add":
        assert change.vectors is not None  # internal: Index always passes vectors with an add
        header["metadata"] = change.metadata
        header["shape"] = list(change.vectors.shape)
        body = np.ascontiguousarray(change.vectors, dtype="<f4").tobytes()
    payload = json.dumps(header, separators=(",", ":")).encode() + b"\n" + body
    return _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode(payload: bytes) -> Change:
    """The change in a record's payload (its checksum already verified)."""
    line_end = payload.index(b"\n")
    header = json.loads(payload[:line_end])
    if header["op"] == "add":
        n, d = header["shape"]
        vectors = np.frombuffer(payload[line_end + 1 :], dtype="<f4").reshape(n, d).astype(np.float32)
        return Change("add", header["ids"], header["metadata"], vectors)
    return Change(header["op"], header["ids"])


def scan(path: Path) -> tuple[list[Change], int, int]:
    """Read the journal at ``path``: ``(changes, good_bytes, file_bytes)``.

    ``good_bytes`` is where the last intact record ends; anything after it is a torn tail. A
    missing file is an empty journal.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0, 0
    changes, pos = [], 0
    while pos + _HEADER.size <= len(data):
        magic, length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if magic != MAGIC or end > len(data):
            break
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        try:
            changes.append(decode(payload))
        except (ValueError, KeyError, TypeError):
            break  # a checksum collision on garbage: treat as torn too
        pos = end
    return changes, pos, len(data)


class JournalWriter:
    """Appends records to one journal file, each fsynced before :meth:`append` returns."""

    def __init__(self, path: Path, good_bytes: int) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
        os.ftruncate(self._fd, good_bytes)  # drop a torn tail before appending after it
        os.lseek(self._fd, good_bytes, os.SEEK_SET)
        os.fsync(self._fd)
        self.bytes = good_bytes

    def append(self, change: Change) -> None:
        record = encode(change)
        view = memoryview(record)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError:
            os.ftruncate(self._fd, self.bytes)  # disk full: leave no partial record behind
            os.lseek(self._fd, self.bytes, os.SEEK_SET)
            raise
        self.bytes += len(record)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
