"""Reading and writing the files of one snapshot generation (see ``index`` for the layout)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from modalign.errors import IndexStoreError
from modalign.io import atomic_write_bytes, atomic_write_json, remove_stray_temp_files

FORMAT, VERSION = "modalign-index", 1
MANIFEST = "index.json"


def generation_files(gen: int) -> dict[str, str]:
    return {
        "vectors": f"vectors-{gen}.npy",
        "items": f"items-{gen}.jsonl",
        "engine": f"engine-{gen}.bin",
        "journal": f"journal-{gen}.wal",
    }


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def items_bytes(ids: list[str | None], meta: list[Any]) -> bytes:
    lines = [
        "null" if i is None else json.dumps({"id": i, "metadata": m}, separators=(",", ":"))
        for i, m in zip(ids, meta)
    ]
    return ("\n".join(lines) + "\n").encode() if lines else b""


def read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    if not path.is_dir():
        raise IndexStoreError(f"no index at {path}: not a directory")
    try:
        manifest = json.loads(file.read_bytes())
    except FileNotFoundError:
        raise IndexStoreError(f"no index at {path}: {MANIFEST} is missing") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise IndexStoreError(f"{file} is not valid JSON ({e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IndexStoreError(f"{file} is not a modalign index manifest")
    if manifest.get("version") != VERSION:
        raise IndexStoreError(
            f"{file}: format version {manifest.get('version')!r}, this modalign reads {VERSION}"
        )
    for key in ("generation", "kind", "dim", "params", "info", "rows", "files"):
        if key not in manifest:
            raise IndexStoreError(f"{file} lacks the field {key!r}")
    return manifest


def read_checked(file: Path, meta: dict[str, int]) -> bytes:
    data = file.read_bytes()  # FileNotFoundError: see Index.open's retry
    if len(data) != meta["bytes"]:
        raise IndexStoreError(f"{file} is damaged: {len(data)} bytes, the manifest says {meta['bytes']}")
    if zlib.crc32(data) != meta["crc32"]:
        raise IndexStoreError(f"{file} is damaged: its checksum differs from the manifest's")
    return data


def decode_snapshot(
    path: Path, files: dict[str, str], blobs: dict[str, bytes], manifest: dict[str, Any]
) -> tuple[np.ndarray, list[str | None], list[Any]]:
    vectors = np.load(io.BytesIO(blobs["vectors"]), allow_pickle=False)
    rows, dim = manifest["rows"], manifest["dim"]
    if vectors.dtype != np.float32 or vectors.shape != (rows, dim):
        raise IndexStoreError(
            f"{path / files['vectors']} holds {vectors.dtype} {vectors.shape}, "
            f"expected float32 ({rows}, {dim})"
        )
    ids: list[str | None] = []
    meta: list[Any] = []
    for line in blobs["items"].decode().splitlines():
        item = json.loads(line)
        ids.append(None if item is None else item["id"])
        meta.append(None if item is None else item["metadata"])
    if len(ids) != rows:
        raise IndexStoreError(f"{path / files['items']} has {len(ids)} rows, the manifest says {rows}")
    return vectors, ids, meta


def write_generation(path: Path, gen: int, blobs: dict[str, bytes], fields: dict[str, Any]) -> None:
    """Write generation ``gen``'s files (each atomically), then commit it by replacing the manifest."""
    names = generation_files(gen)
    for key, data in blobs.items():
        atomic_write_bytes(path / names[key], data)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "generation": gen,
        **fields,
        "files": {key: {"bytes": len(d), "crc32": zlib.crc32(d)} for key, d in blobs.items()},
    }
    atomic_write_json(path / MANIFEST, manifest)  # the commit point


def remove_other_generations(path: Path, gen: int) -> None:
    """Delete every generation's files but ``gen``'s, and dead temp files (writer only)."""
    remove_stray_temp_files(path)
    keep = set(generation_files(gen).values())
    for p in path.iterdir():
        if p.name.split("-")[0] in ("vectors", "items", "engine", "journal") and p.name not in keep:
            p.unlink(missing_ok=True)


def lock_for_writing(path: Path) -> int:
    """An fd holding the exclusive ``flock`` on ``path/.lock`` (the kernel drops it if we die)."""
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise IndexStoreError(
            f"the index at {path} is being changed by another process; close it there first"
        ) from None
    return fd
