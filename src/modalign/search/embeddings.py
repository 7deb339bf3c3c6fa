"""The on-disk format of an embedded corpus (``modalign embed``), written in chunks and read back.

A directory holds::

    embeddings.json      the plan (model, modality, manifest and its checksum, chunk size, ...),
                         the finished chunks with their sizes and crc32s, and ``done``
    chunk-00000.npy      (n, D) float32 unit rows of the chunk's embedded manifest rows
    chunk-00000.jsonl    one line per vector: {"id": ..., "row": manifest row, "metadata": {...}}

Chunk c covers manifest rows ``[c * chunk_rows, (c + 1) * chunk_rows)``, whatever was skipped, so a
resumed run recomputes exactly the chunks an uninterrupted one would, batch for batch. Each chunk
file is written atomically, then ``embeddings.json`` is replaced to list it: a killed run loses at
most the chunk it was writing.
"""

from __future__ import annotations

import io
import json
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modalign.errors import IndexStoreError
from modalign.io import atomic_write_bytes, atomic_write_json

FORMAT, VERSION = "modalign-embeddings", 1
PLAN = "embeddings.json"


@dataclass(frozen=True)
class Embeddings:
    """An embedded corpus: ``vectors`` ``(N, D)``, ``ids``, ``metadata`` and the run's ``plan``."""

    vectors: np.ndarray
    ids: list[str]
    metadata: list[dict[str, Any]]
    plan: dict[str, Any]


def chunk_files(c: int) -> tuple[str, str]:
    return f"chunk-{c:05d}.npy", f"chunk-{c:05d}.jsonl"


def jsonable(value: Any) -> Any:
    """A manifest cell as JSON: NumPy scalars/arrays unwrapped, NaN as null, anything else as text."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    return str(value)


def write_chunk(
    out: Path, c: int, vectors: np.ndarray, items: list[dict[str, Any]], skipped: dict[str, int]
) -> dict[str, Any]:
    """Write chunk ``c`` atomically; returns its entry for the plan's ``chunks`` list."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    npy = buf.getvalue()
    lines = b"".join(json.dumps(item, separators=(",", ":")).encode() + b"\n" for item in items)
    vec_name, item_name = chunk_files(c)
    atomic_write_bytes(out / vec_name, npy)
    atomic_write_bytes(out / item_name, lines)
    return {
        "chunk": c,
        "embedded": len(items),
        "skipped": dict(sorted(skipped.items())),
        "files": {vec_name: _stamp(npy), item_name: _stamp(lines)},
    }


def write_plan(out: Path, plan: dict[str, Any]) -> None:
    atomic_write_json(out / PLAN, plan)


def read_plan(out: Path) -> dict[str, Any] | None:
    """The plan in ``out``, or None when there is none yet."""
    try:
        plan = json.loads((out / PLAN).read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise IndexStoreError(f"{out / PLAN} is not valid JSON ({e})") from None
    if not isinstance(plan, dict) or plan.get("format") != FORMAT or plan.get("version") != VERSION:
        raise IndexStoreError(f"{out / PLAN} is not a modalign embeddings plan (version {VERSION})")
    return plan


def chunk_intact(out: Path, entry: dict[str, Any]) -> bool:
    """Whether a finished chunk's files are still there with their recorded size and checksum."""
    for name, stamp in entry["files"].items():
        try:
            if _stamp((out / name).read_bytes()) != stamp:
                return False
        except FileNotFoundError:
            return False
    return True


def read_embeddings(directory: str | Path) -> Embeddings:
    """Every chunk of a finished ``modalign embed`` run, checked against the plan.

    Raises:
        IndexStoreError: no plan, the run is unfinished, or a chunk is missing or damaged.
    """
    out = Path(directory)
    plan = read_plan(out)
    if plan is None:
        raise IndexStoreError(f"no embeddings in {out}: {PLAN} is missing (write them with modalign embed)")
    if not plan.get("done"):
        raise IndexStoreError(
            f"the embedding run in {out} is unfinished ({len(plan['chunks'])} chunks written): rerun the "
            "same modalign embed command to finish it"
        )
    vectors: list[np.ndarray] = []
    ids: list[str] = []
    metadata: list[dict[str, Any]] = []
    for entry in plan["chunks"]:
        vec_name, item_name = chunk_files(entry["chunk"])
        if not chunk_intact(out, entry):
            raise IndexStoreError(f"{out / vec_name} or {out / item_name} is missing or damaged")
        v = np.load(out / vec_name, allow_pickle=False)
        items = [json.loads(line) for line in (out / item_name).read_bytes().splitlines()]
        if v.shape != (len(items), plan["dim"]):
            raise IndexStoreError(f"{out / vec_name}: shape {v.shape}, its item list has {len(items)} rows")
        vectors.append(v)
        ids.extend(item["id"] for item in items)
        metadata.extend(item["metadata"] for item in items)
    stacked = np.concatenate(vectors) if vectors else np.zeros((0, plan["dim"]), np.float32)
    return Embeddings(stacked, ids, metadata, plan)


def _stamp(data: bytes) -> dict[str, int]:
    return {"bytes": len(data), "crc32": zlib.crc32(data)}
