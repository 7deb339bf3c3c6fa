"""``modalign init``'s working state (the config being built, its comments and column findings) and
the small value tests the inference uses."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from modalign.data.manifest import Manifest, cell, is_missing
from modalign.data.transforms._files import InlineFile

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SERIES_SUFFIXES = (".npy",)


@dataclass(frozen=True)
class ColumnFinding:
    """What ``init`` made of one manifest column.

    Attributes:
        column: the column (``a.b`` for a field of a nested object).
        use: ``id``, ``split``, ``label``, ``modality NAME``, ``feature of NAME`` or ``not used``.
        reason: what was seen in the data that led there.
    """

    column: str
    use: str
    reason: str


@dataclass(frozen=True)
class InitResult:
    """A config inferred from a manifest: the raw dict, the commented YAML and the reasons."""

    raw: dict[str, Any]
    text: str
    findings: list[ColumnFinding]
    notes: list[str]
    n_rows: int


@dataclass
class Plan:
    """The config being built, with the comment of every path (``("trainer", "lr")``)."""

    raw: dict[str, Any]
    comments: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    findings: list[ColumnFinding] = field(default_factory=list)

    def note(self, path: tuple[str, ...], text: str) -> None:
        self.comments.setdefault(path, []).append(text)

    def found(self, column: str, use: str, reason: str) -> None:
        self.findings.append(ColumnFinding(column, use, reason))


def value_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    names: dict[type, str] = {str: "str", list: "list", dict: "object"}
    return names.get(type(v), type(v).__name__)


def is_num(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def as_number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v) if isinstance(v, str) and v.strip() else None
    except ValueError:
        return None


def file_suffix(values: list[str]) -> str | None:
    """The suffix most values end with, when 90% of them look like file paths."""
    suffixes = Counter(Path(v).suffix.lower() for v in values if "\n" not in v and len(v) < 4096)
    suffix, n = suffixes.most_common(1)[0] if suffixes else ("", 0)
    known = IMAGE_SUFFIXES + AUDIO_SUFFIXES + SERIES_SUFFIXES
    if n < 0.9 * len(values) or not re.fullmatch(r"\.[a-z0-9]{2,5}", suffix):
        return None
    if suffix not in known and any(" " in v for v in values[:100]):
        return None  # "e.g. the 1.5kg" is text, not a file
    return suffix


def media_path(m: Manifest, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else m.base_dir / p


def media(m: Manifest, value: str | InlineFile) -> str | BinaryIO:
    """What a decoder opens for a media cell: the file a path names, or the bytes a cell holds."""
    return value.open() if isinstance(value, InlineFile) else str(media_path(m, value))


def spread(values: list[Any], k: int) -> list[Any]:
    """Up to ``k`` values spread evenly over the rows."""
    step = max(1, len(values) // k)
    return values[::step][:k]


def pow2(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, int(math.log2(max(x, 1))))))


def identifier(name: str) -> str:
    s = re.sub(r"\W+", "_", name).strip("_")
    return s or "column"


def unique_name(name: str, taken: dict[str, Any]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    return out


def short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


@dataclass(frozen=True)
class Label:
    column: str
    kind: str  # multiclass or regression
    n_classes: int


def column_values(rows: Sequence[dict[str, Any]], column: str) -> list[Any]:
    """The present values of ``column``."""
    return [v for r in rows if not is_missing(v := cell(r, column))]
