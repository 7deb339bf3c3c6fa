"""Atomic file writes: temp file in the same directory, flush + fsync, ``os.replace``.

A crash at any moment leaves either the old file or the new one, never a torn file; at worst a
temp file named ``.{name}.{random}.tmp`` stays beside it (:func:`remove_stray_temp_files` removes
them; the run directory does so when a run starts). Files get the mode ``open()`` would give them
(``0o666`` minus the umask), not ``mkstemp``'s ``0o600``. Every ``OSError`` (not a directory, no
permission, read-only file system, disk full) becomes an :class:`OutputError` naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from modalign.errors import OutputError

_TEMP = re.compile(r"^\..+\.tmp$")  # .{name}.{mkstemp's random part}.tmp


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file.

    Raises:
        OutputError: the directory cannot be created or written (the message says why); the
            previous file, if any, is left as it was and no temp file remains.
    """
    atomic_write(path, lambda f: f.write(data))


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> None:
    """:func:`atomic_write_bytes` of what ``write`` writes to the open file (for large files)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise output_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise output_error(path, e) from None
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def output_error(path: Path, e: OSError) -> OutputError:
    """An :class:`OutputError` naming ``path``, the system's reason and what to do about it."""
    reason, hint = e.strerror or str(e), ""
    if e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        hint = "free some space (files written before are intact)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a directory you can write to"
    elif e.errno in (errno.ENOTDIR, errno.EEXIST):  # mkdir over a file gives EEXIST
        reason, hint = "not a directory", "a part of the path is a file: choose another path"
    return OutputError(f"cannot write {path}: {reason}" + (f"; {hint}" if hint else ""))


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (Linux /proc)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but it is restored at once)
    os.umask(mask)
    return mask


def remove_stray_temp_files(directory: Path) -> list[Path]:
    """Delete the temp files that killed atomic writes left in ``directory``; returns them.

    Only files named like ours (``.{name}.{random}.tmp``) are touched. Call it only while no other
    process writes into ``directory`` (e.g. holding the run's lock): a live write's temp file
    looks the same.
    """
    if not directory.is_dir():
        return []
    removed = []
    for p in sorted(directory.iterdir()):
        if _TEMP.match(p.name) and p.is_file() and not p.is_symlink():
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable on POSIX; not possible on every platform.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
