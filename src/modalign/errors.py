"""The one error hierarchy of modalign.

Every error a user can cause derives from :class:`ModalignError`; messages name the value and the fix.
"""

from __future__ import annotations

import functools
from typing import Any


class ModalignError(Exception):
    """Base class of every error modalign raises on purpose."""


class ConfigError(ModalignError):
    """An experiment config or argument is invalid."""


class DataError(ModalignError):
    """A sample cannot be read or is invalid.

    Attributes:
        reason: short machine-readable reason (e.g. ``missing_file``), used to count skips.
        row: 0-based row number in the manifest, when known.
        column: manifest column (modality name), when known.
        path: the file involved, when there is one.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "invalid",
        row: int | None = None,
        column: str | None = None,
        path: str | None = None,
    ) -> None:
        self.reason = reason
        self.row = row
        self.column = column
        self.path = path
        self.detail = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.path is not None:
            where.append(f"file {self.path}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.detail} [{self.reason}]" if prefix else f"{self.detail} [{self.reason}]"

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled (worker processes, Ray tasks) with its fields, not re-parsed from the message
        rebuild = functools.partial(
            type(self), reason=self.reason, row=self.row, column=self.column, path=self.path
        )
        return (rebuild, (self.detail,))

    def located(self, *, row: int | None = None, column: str | None = None) -> DataError:
        """Return a copy with the row/column filled in (keeps what is already known)."""
        return DataError(
            self.detail,
            reason=self.reason,
            row=self.row if self.row is not None else row,
            column=self.column if self.column is not None else column,
            path=self.path,
        )


class CheckpointError(ModalignError):
    """A checkpoint or saved model is missing, truncated, foreign or incompatible."""


class RunDirectoryError(ConfigError):
    """A run directory cannot be used as asked.

    It is in use by another process, holds an earlier run (neither ``--resume`` nor
    ``--overwrite`` given) or is not a run at all, or its saved config differs from the one resumed.
    """


class OutputError(ModalignError, OSError):
    """An output file or directory cannot be written: not a directory, no permission, disk full.

    Also an :class:`OSError`, so code that caught the raw error keeps working.
    """


class TrainingError(ModalignError):
    """Training cannot go on: the loss, the gradients or the weights became non-finite (NaN/inf).

    Raised before any non-finite update is applied or saved; the last checkpoint stays as it was.
    """


class NonFiniteError(ModalignError):
    """A model produced non-finite (NaN/inf) embeddings; they are refused, never scored."""


class IndexStoreError(ModalignError):
    """A vector index or embedded corpus on disk is missing, damaged or unfinished, or another process
    is writing it."""


class ItemNotFoundError(ModalignError, KeyError):
    """No item with this id in the index (a ``KeyError`` too)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class RegistryError(ConfigError, KeyError):
    """An unknown or duplicate registry name (in a config, or a duplicate registration)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])
