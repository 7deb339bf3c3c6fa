"""The run directory's lock: ``RUN/run.lock`` under an OS advisory lock (``flock``) while a run lasts.

The kernel releases it when the process ends in any way, ``kill -9`` included, so a lock file
without a holder is stale by definition: the next run names whose it was and takes it over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from modalign.errors import RunDirectoryError
from modalign.io import output_error


class RunLock:
    """An exclusive, non-blocking lock on ``path`` held until :meth:`release` or process exit."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock; returns the record a dead holder left (stale lock), else None.

        Raises:
            RunDirectoryError: another process holds it (its pid, host and command are named).
            OutputError: the lock file cannot be created or written.
        """
        try:
            import fcntl
        except ImportError:  # Windows
            note(
                "run directories are not locked on this platform: "
                f"let one run at a time use {self.path.parent}"
            )
            return None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as e:
                raise output_error(self.path, e) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_record(fd)
                os.close(fd)
                raise RunDirectoryError(
                    f"{self.path.parent} is in use by {_describe(holder)}: wait for that run to end "
                    "(or stop it), or choose another --out"
                ) from None
            except OSError as e:  # e.g. a network file system without locks
                note(
                    f"cannot lock {self.path} ({e.strerror}): make sure only one run uses {self.path.parent}"
                )
                break
            try:  # a holder that released it between our open() and flock() unlinked the file
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_record(fd)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        except OSError as e:
            os.close(fd)
            raise output_error(self.path, e) from None
        self.fd = fd
        if previous is not None:
            note(
                f"{self.path} was left by {_describe(previous)}, which ended without releasing it "
                "(killed?); taking the run directory over",
                kind="warning",
            )
        return previous

    def release(self) -> None:
        """Delete the lock file and release the lock (in that order: see :meth:`acquire`)."""
        if self.fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self.fd)
            self.fd = None


def note(message: str, kind: str = "note") -> None:
    """One line on stderr: what a run directory check did or found."""
    print(f"{kind}: {message}", file=sys.stderr, flush=True)


def _read_record(fd: int) -> dict[str, Any] | None:
    """The holder record in a lock file; None when empty; {} when unreadable (torn by a kill)."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 65536)
    except OSError:
        return {}
    if not data.strip():
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _describe(record: dict[str, Any] | None) -> str:
    if not record:
        return "another process (no record of which)"
    return (
        f"pid {record.get('pid')} on host {record.get('host')} "
        f"(since {record.get('started')}: {record.get('command')})"
    )
