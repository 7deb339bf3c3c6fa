"""A crash-safe vector index: FAISS in-process, metadata beside the vectors, filters inside the search.

On disk an index is a directory::

    index.json             the manifest: kind, dim, params, info, generation g, sizes and crc32s
    vectors-g.npy          (N, D) float32 unit rows, deleted rows included (tombstones)
    items-g.jsonl          one line per row: {"id": ..., "metadata": {...}} or null when deleted
    engine-g.bin           the FAISS or usearch index (a flat one is rebuilt from the vectors)
    journal-g.wal          changes since snapshot g (see ``_journal``), one fsynced record each

Durability: a change is acknowledged (``add``/``delete`` returns) only after its journal record is
fsynced. :meth:`Index.save` writes snapshot g+1 file by file (temp, fsync, rename), then commits
by replacing ``index.json`` (the only commit point), then deletes generation g. A ``kill -9`` at
any moment leaves either snapshot g with its journal or snapshot g+1, both complete; ``open``
replays the journal and drops a torn last record. One process writes at a time (``flock`` on
``.lock``, taken at the first change); readers need no lock.

One class in one file (over 400 lines): every method reads or changes the same state (rows, engine,
journal writer, write lock) under one mutex. What needs none of it lives in the ``_`` modules:
``_engine`` (FAISS / usearch), ``_exact``, ``_filters``, ``_journal``, ``_snapshot``, ``_validate``.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modalign.errors import ConfigError, IndexStoreError, ItemNotFoundError
from modalign.search import _engine
from modalign.search._exact import CACHE_SHARE, exact_limit, exact_top_k, filter_key, pad, rerank
from modalign.search._filters import MetadataColumns, compile_filter
from modalign.search._journal import Change, JournalWriter, scan
from modalign.search._snapshot import (
    MANIFEST,
    decode_snapshot,
    generation_files,
    items_bytes,
    lock_for_writing,
    npy_bytes,
    read_checked,
    read_manifest,
    remove_other_generations,
    write_generation,
)
from modalign.search._validate import check_items, check_json, unit_rows


@dataclass(frozen=True)
class Hit:
    """One search result: the item's id, its cosine score and its metadata."""

    id: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)


class Index:
    """A vector index with metadata, filtered exact-k search, and journalled add/delete.

    Create one with :meth:`build`, reopen it with :meth:`open`. Scores are inner products of
    unit vectors (cosine); vectors are L2-normalised on the way in.

    Example:
        >>> idx = Index.build("idx", vectors, ids, metadata, kind="hnsw")
        >>> idx.search(query, k=5, filter={"split": "test"})[0][0].id
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._mutex = threading.RLock()
        self._lock_fd = -1
        self._writer: JournalWriter | None = None
        self._columns = MetadataColumns()
        self._subsets: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._closed = False

    # ------------------------------------------------------------------ creating and opening
    @classmethod
    def build(
        cls,
        path: str | os.PathLike[str],
        vectors: np.ndarray,
        ids: list[str],
        metadata: list[dict[str, Any]] | None = None,
        kind: str = "flat",
        info: dict[str, Any] | None = None,
        **params: Any,
    ) -> Index:
        """Build an index of ``vectors`` ``(N, D)`` named by ``ids`` and write it to ``path``.

        Args:
            path: a new or empty directory.
            vectors: ``(N, D)`` float rows (normalised here; zero or non-finite rows are refused).
            ids: N unique strings.
            metadata: N JSON-serialisable dicts (filterable fields), or None.
            kind: ``flat`` (exact), ``hnsw`` or ``ivfpq`` (approximate, FAISS), ``usearch``
                (HNSW by usearch) or ``qdrant`` (a Qdrant collection: ``modalign.search.qdrant``).
            info: a JSON dict saved with the index (model_dir, modality, corpus_root, ...).
            **params: the kind's parameters (``hnsw`` and ``usearch``: m, ef_construction,
                ef_search; ``ivfpq``: nlist, m, nbits, nprobe, refine; ``qdrant``: url, api_key,
                collection).

        Raises:
            ConfigError: bad kind, parameters, shapes, ids or metadata.
            IndexStoreError: ``path`` exists and is not an empty directory.
        """
        path = Path(path)
        if kind == "qdrant":  # Qdrant keeps vectors, payloads and its own WAL
            from modalign.search.qdrant import QdrantIndex

            return QdrantIndex.create(path, vectors, ids, metadata, info, **params)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexStoreError(
                f"cannot build an index at {path}: it exists and is not an empty directory "
                "(choose a new path, or delete it first)"
            )
        vectors = unit_rows(vectors, None, "vectors")
        n, dim = vectors.shape
        metadata = check_items(ids, metadata, n, set())
        resolved = _engine.resolve_params(kind, dim, n, params)
        info = dict(info or {})
        check_json(info, "info")
        self = cls(path)
        self.kind, self.dim, self.params, self.info = kind, dim, resolved, info
        self._set_rows(vectors, list(ids), list(metadata))
        self._engine = _engine.build(kind, dim, resolved, vectors)
        self._gen, self._journal_bytes = 0, 0
        path.mkdir(parents=True, exist_ok=True)
        self._take_write_lock()
        self._write_snapshot(1)
        return self

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Index:
        """Open the index at ``path``: check every file's size and checksum, replay the journal.

        Raises:
            IndexStoreError: ``path`` is not an index, or a file is missing or damaged (the message
                names it and what is wrong).
        """
        from modalign.search.qdrant import CONFIG, QdrantIndex

        if (Path(path) / CONFIG).is_file():
            return QdrantIndex.load(Path(path))
        self = cls(Path(path))
        for attempt in range(3):
            try:
                self._load()
                return self
            except FileNotFoundError as e:  # a writer committed a new snapshot and removed the old one
                if attempt == 2:
                    raise IndexStoreError(
                        f"{e.filename} is missing (the index at {self.path} is incomplete)"
                    ) from None
        raise AssertionError("unreachable")

    def _load(self) -> None:
        manifest = read_manifest(self.path)
        gen = manifest["generation"]
        files = generation_files(gen)
        blobs = {}
        if (
            not isinstance(manifest["files"], dict)
            or not {"vectors", "items"} <= set(manifest["files"])
            or set(manifest["files"]) - set(files)
        ):
            raise IndexStoreError(f"{self.path / MANIFEST}: its file list {manifest['files']!r} is not valid")
        for key, meta in manifest["files"].items():
            blobs[key] = read_checked(self.path / files[key], meta)
        self.kind, self.dim = manifest["kind"], manifest["dim"]
        self.params, self.info = manifest["params"], manifest["info"]
        vectors, ids, metadata = decode_snapshot(self.path, files, blobs, manifest)
        self._set_rows(vectors, ids, metadata)
        if "engine" in blobs:
            try:
                self._engine = _engine.from_bytes(self.kind, blobs["engine"], self.dim, self.params)
            except (RuntimeError, ValueError) as e:
                raise IndexStoreError(
                    f"{self.path / files['engine']}: not a {self.kind} index ({e})"
                ) from None
            rows, dim = _engine.size(self.kind, self._engine)
            if (rows, dim) != (len(ids), self.dim):
                raise IndexStoreError(
                    f"{self.path / files['engine']} holds {rows} vectors of dim {dim}, "
                    f"the snapshot {len(ids)} of dim {self.dim}"
                )
        else:
            self._engine = _engine.build(self.kind, self.dim, self.params, vectors)
        self._gen = gen
        changes, self._journal_bytes, _ = scan(self.path / files["journal"])
        for number, change in enumerate(changes):
            try:
                self._apply(change)
            except (ConfigError, ItemNotFoundError) as e:
                raise IndexStoreError(
                    f"{self.path / files['journal']}: record {number} cannot be replayed ({e})"
                ) from None

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._row_of

    @property
    def ids(self) -> list[str]:
        """The ids of the live items, in the order they were added."""
        return [i for i in self._ids if i is not None]

    def get(self, item_id: str) -> tuple[np.ndarray, dict[str, Any]]:
        """The unit vector ``(D,)`` and metadata of ``item_id``; :class:`ItemNotFoundError` if absent."""
        with self._mutex:
            row = self._row_of.get(item_id)
            if row is None:
                raise ItemNotFoundError(f"no item with id {item_id!r} in the index at {self.path}")
            return self._vectors[row].copy(), dict(self._meta[row] or {})

    def search(
        self, queries: np.ndarray, k: int = 10, filter: dict[str, Any] | None = None
    ) -> list[list[Hit]]:
        """The ``k`` items nearest to each query, best first; one list per query row.

        Args:
            queries: ``(Q, D)`` or ``(D,)`` (normalised here).
            k: hits per query; exactly ``k`` whenever at least ``k`` live items match ``filter``.
            filter: metadata conditions (see ``_filters``): ``{"split": "test"}``,
                ``{"label": ["a", "b"]}``, ``{"year": {"gte": 2000, "lt": 2010}}``.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        q = unit_rows(np.asarray(queries), self.dim, "queries")
        with self._mutex:
            self._check_open()
            if not self._row_of:
                if filter is not None:
                    compile_filter(filter, self._meta, self._columns)  # a bad filter still says so
                return [[] for _ in q]
            if filter is not None:
                scores, rows = self._search_filtered(q, k, filter)
            elif len(self._row_of) < len(self._ids):
                scores, rows = self._search_rows(q, k, self._live)
            else:
                scores, rows = self._search_rows(q, k, None)
            return [
                [
                    Hit(self._ids[r], float(s), dict(self._meta[r] or {}))  # type: ignore[arg-type]
                    for s, r in zip(srow.tolist(), rrow.tolist())
                    if r >= 0
                ]
                for srow, rrow in zip(scores, rows)
            ]

    def _search_filtered(self, q: np.ndarray, k: int, where: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Search the rows matching ``where``: exactly over them when they are few (their vectors
        gathered once and kept for the next query with the same filter), else inside FAISS."""
        key = filter_key(where)
        if key is not None and key in self._subsets:
            self._subsets.move_to_end(key)
            rows, sub = self._subsets[key]
            return exact_top_k(sub, rows, q, k)
        allowed = compile_filter(where, self._meta, self._columns) & self._live
        n, count = len(self._ids), int(allowed.sum())
        if count <= exact_limit(self.kind, self.params, n, k):
            rows = np.flatnonzero(allowed)
            sub = self._vectors[rows]
            if key is not None and count <= CACHE_SHARE * n:
                self._subsets[key] = (rows, sub)
                while sum(len(r) for r, _ in self._subsets.values()) > CACHE_SHARE * n:
                    self._subsets.popitem(last=False)  # the least recently used filter goes first
            return exact_top_k(sub, rows, q, k)
        return self._search_rows(q, k, allowed)

    def _search_rows(
        self, q: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS search over every row, or over the ``allowed`` ones; exactly ``k`` when they exist."""
        n = len(self._ids)
        fetch = k * self.params["refine"] if self.kind == "ivfpq" else k
        scores, rows = _engine.search(self.kind, self._engine, self.params, q, min(fetch, n), allowed)
        if self.kind == "ivfpq":  # re-score the candidates exactly from the stored vectors
            scores, rows = rerank(self._vectors, q, rows, k)
        scores, rows = scores[:, :k], rows[:, :k]
        want = min(k, n if allowed is None else int(allowed.sum()))
        if rows.shape[1] >= want and (want == 0 or rows[:, want - 1].min() >= 0):
            return scores, rows
        # the approximate walk found fewer than k allowed rows for some queries: score them exactly
        short = np.flatnonzero((rows >= 0).sum(axis=1) < want)
        candidates = np.flatnonzero(allowed) if allowed is not None else np.arange(n)
        ex_s, ex_r = exact_top_k(self._vectors[candidates], candidates, q[short], k)
        scores, rows = pad(scores, k), pad(rows, k)
        scores[short, : ex_s.shape[1]], rows[short, : ex_r.shape[1]] = ex_s, ex_r
        return scores, rows

    # ------------------------------------------------------------------ changing
    def add(self, vectors: np.ndarray, ids: list[str], metadata: list[dict[str, Any]] | None = None) -> None:
        """Add items; durable (journalled and fsynced) when this returns.

        Raises:
            ConfigError: wrong shape/dim, non-finite or zero rows, an id already in the index or
                repeated, metadata that is not JSON.
            IndexStoreError: another process is writing this index.
        """
        v = unit_rows(np.asarray(vectors), self.dim, "vectors")
        with self._mutex:
            self._check_open()
            meta = check_items(ids, metadata, len(v), self._row_of)
            self._commit(Change("add", list(ids), meta, v))

    def delete(self, ids: list[str]) -> None:
        """Delete items by id; durable when this returns. Unknown ids raise :class:`ItemNotFoundError`."""
        ids = list(ids)
        with self._mutex:
            self._check_open()
            missing = [i for i in ids if i not in self._row_of]
            if missing:
                raise ItemNotFoundError(f"cannot delete {missing[:5]}: not in the index at {self.path}")
            if len(set(ids)) != len(ids):
                raise ConfigError("delete: an id is listed twice")
            self._commit(Change("delete", ids))

    def save(self) -> None:
        """Write a new snapshot holding every change and empty the journal (atomic; see module doc)."""
        with self._mutex:
            self._check_open()
            self._ensure_writer()
            self._write_snapshot(self._gen + 1)

    def close(self) -> None:
        """Release the write lock and the journal. Changes are already durable; nothing is lost."""
        with self._mutex:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # closing releases the flock
                self._lock_fd = -1
            self._closed = True

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Index({str(self.path)!r}, kind={self.kind!r}, dim={self.dim}, items={len(self)})"

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise IndexStoreError(f"the index at {self.path} is closed; Index.open it again")

    def _set_rows(self, vectors: np.ndarray, ids: list[str | None], metadata: list[Any]) -> None:
        self._vectors = np.array(vectors, dtype=np.float32, copy=True, ndmin=2).reshape(-1, self.dim)
        self._ids = ids
        self._meta = metadata
        self._live = np.array([i is not None for i in ids], dtype=bool)
        self._row_of = {i: r for r, i in enumerate(ids) if i is not None}
        self._columns.reset()
        self._subsets.clear()

    def _apply(self, change: Change) -> None:
        self._subsets.clear()  # cached filter subsets describe the rows before this change
        if change.op == "add":
            assert change.vectors is not None and change.metadata is not None
            check_items(change.ids, change.metadata, len(change.vectors), self._row_of)
            start, end = len(self._ids), len(self._ids) + len(change.vectors)
            if end > len(self._vectors):  # grow by doubling: adding one item stays O(1) amortised
                grown = np.empty((max(end, 2 * len(self._vectors)), self.dim), dtype=np.float32)
                grown[:start] = self._vectors[:start]
                self._vectors = grown
            self._vectors[start:end] = change.vectors
            _engine.add(self.kind, self._engine, change.vectors, start)
            self._ids.extend(change.ids)
            self._meta.extend(change.metadata)
            self._live = np.concatenate([self._live, np.ones(len(change.ids), dtype=bool)])
            self._row_of.update({i: start + j for j, i in enumerate(change.ids)})
        elif change.op == "delete":
            for i in change.ids:
                row = self._row_of.pop(i)
                self._ids[row], self._meta[row] = None, None
                self._live[row] = False
        else:
            raise ConfigError(f"unknown journal operation {change.op!r}")

    def _commit(self, change: Change) -> None:
        self._ensure_writer()
        assert self._writer is not None
        self._writer.append(change)  # durable from here: acknowledged when we return
        self._journal_bytes = self._writer.bytes
        self._apply(change)

    def _take_write_lock(self) -> None:
        if self._lock_fd < 0:
            self._lock_fd = lock_for_writing(self.path)

    def _ensure_writer(self) -> None:
        """Take the write lock; reload if another writer changed the index since we read it."""
        if self._writer is not None:
            return
        self._take_write_lock()
        gen = read_manifest(self.path)["generation"]
        _, good, _ = scan(self.path / generation_files(gen)["journal"])
        if gen != self._gen or good != self._journal_bytes:
            self._load()
        self._cleanup()
        self._writer = JournalWriter(self.path / generation_files(self._gen)["journal"], self._journal_bytes)

    def _cleanup(self) -> None:
        """Remove other generations' files and dead temp files (only under the write lock)."""
        remove_other_generations(self.path, self._gen)

    def _write_snapshot(self, gen: int) -> None:
        names = generation_files(gen)
        n = len(self._ids)
        blobs = {"vectors": npy_bytes(self._vectors[:n]), "items": items_bytes(self._ids, self._meta)}
        if _engine.persisted(self.kind):
            blobs["engine"] = _engine.to_bytes(self.kind, self._engine)
        fields = {"kind": self.kind, "dim": self.dim, "params": self.params, "info": self.info}
        write_generation(self.path, gen, blobs, {**fields, "rows": n, "items": len(self._row_of)})
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._gen, self._journal_bytes = gen, 0
        self._cleanup()
        self._writer = JournalWriter(self.path / names["journal"], 0)
