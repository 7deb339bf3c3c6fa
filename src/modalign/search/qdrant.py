"""Qdrant behind the Index interface (``kind="qdrant"``): its local mode in a directory, or a server.

``Index.build(path, ..., kind="qdrant")`` and ``Index.open(path)`` return a :class:`QdrantIndex`;
``path`` holds ``qdrant.json`` (dim, info, collection, server URL or none) and, in local mode,
Qdrant's own storage in ``path/storage``. Give ``url="http://host:6333"`` (and ``api_key``) to use
a Qdrant server or cluster instead: the scale-out path (shards, replication, its write-ahead log).

Durability and concurrency are Qdrant's, not the FAISS journal's: a server acknowledges a change
after writing it to its WAL (every call here waits for that); local mode is Qdrant's in-process
store for tests and small data. Item ids are strings: each point gets ``uuid5(id)`` as its Qdrant
id and keeps ``{"id": ..., "metadata": {...}}`` as payload. Filters use the Index's language,
translated to a Qdrant ``Filter`` over ``metadata.<field>`` and applied during the search.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from modalign.errors import ConfigError, IndexStoreError, ItemNotFoundError
from modalign.io import atomic_write_json
from modalign.search._validate import check_items, check_json, unit_rows
from modalign.search.index import Hit, Index

CONFIG = "qdrant.json"
FORMAT = "modalign-qdrant-index"
_NAMESPACE = uuid.UUID("6f1d3c1e-7a52-4f4e-9a0e-2d2c8f1b9d77")  # ids -> point ids, fixed forever


def point_id(item_id: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, item_id))


class QdrantIndex(Index):
    """The Index interface over a Qdrant collection (see the module docstring)."""

    _client: Any
    _collection: str

    @classmethod
    def create(
        cls,
        path: Path,
        vectors: np.ndarray,
        ids: list[str],
        metadata: list[dict[str, Any]] | None,
        info: dict[str, Any] | None,
        *,
        url: str | None = None,
        api_key: str | None = None,
        collection: str = "modalign",
    ) -> QdrantIndex:
        from qdrant_client import models

        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise IndexStoreError(f"cannot build an index at {path}: it exists and is not an empty directory")
        v = unit_rows(vectors, None, "vectors")
        metadata = check_items(ids, metadata, len(v), set())
        check_json(info or {}, "info")
        config = {
            "format": FORMAT,
            "dim": v.shape[1],
            "info": dict(info or {}),
            "collection": collection,
            "url": url,
        }
        self = cls._connect(path, config, api_key, create=True)
        self._client.create_collection(
            collection, vectors_config=models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
        )
        self.add(v, list(ids), metadata)
        atomic_write_json(path / CONFIG, config)  # written last: a half-built index does not open
        return self

    @classmethod
    def load(cls, path: Path, api_key: str | None = None) -> QdrantIndex:
        try:
            config = json.loads((Path(path) / CONFIG).read_text())
        except ValueError as e:
            raise IndexStoreError(f"{Path(path) / CONFIG} is not valid JSON ({e})") from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise IndexStoreError(f"{Path(path) / CONFIG} is not a modalign Qdrant index")
        self = cls._connect(Path(path), config, api_key, create=False)
        if not self._client.collection_exists(self._collection):
            raise IndexStoreError(f"Qdrant has no collection {self._collection!r} (index at {path})")
        return self

    @classmethod
    def _connect(cls, path: Path, config: dict[str, Any], api_key: str | None, create: bool) -> QdrantIndex:
        try:
            from qdrant_client import QdrantClient
        except ImportError:
            raise ConfigError("kind='qdrant' needs qdrant-client: pip install 'modalign[qdrant]'") from None
        self = cls(path)
        self.kind, self.dim, self.params, self.info = "qdrant", int(config["dim"]), {}, config["info"]
        self._collection = config["collection"]
        if config.get("url"):
            self._client = QdrantClient(url=config["url"], api_key=api_key)
        else:
            if create:
                (path / "storage").mkdir(parents=True, exist_ok=True)
            self._client = QdrantClient(path=str(path / "storage"))
        return self

    # ------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return int(self._client.count(self._collection, exact=True).count)

    def __contains__(self, item_id: object) -> bool:
        return isinstance(item_id, str) and bool(self._client.retrieve(self._collection, [point_id(item_id)]))

    @property
    def ids(self) -> list[str]:
        out: list[str] = []
        offset = None
        while True:
            points, offset = self._client.scroll(
                self._collection, limit=1024, offset=offset, with_payload=["id"]
            )
            out.extend(p.payload["id"] for p in points if p.payload is not None)
            if offset is None:
                return out

    def get(self, item_id: str) -> tuple[np.ndarray, dict[str, Any]]:
        found = self._client.retrieve(self._collection, [point_id(item_id)], with_vectors=True)
        if not found or found[0].payload is None:
            raise ItemNotFoundError(f"no item with id {item_id!r} in the index at {self.path}")
        return np.asarray(found[0].vector, dtype=np.float32), dict(found[0].payload["metadata"])

    def search(
        self, queries: np.ndarray, k: int = 10, filter: dict[str, Any] | None = None
    ) -> list[list[Hit]]:
        from qdrant_client import models

        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        q = unit_rows(np.asarray(queries), self.dim, "queries")
        where = None if filter is None else qdrant_filter(filter)
        requests = [
            models.QueryRequest(query=row.tolist(), filter=where, limit=k, with_payload=True) for row in q
        ]
        answers = self._client.query_batch_points(self._collection, requests)
        return [
            [Hit(p.payload["id"], float(p.score), dict(p.payload["metadata"])) for p in a.points if p.payload]
            for a in answers
        ]

    # ------------------------------------------------------------------ changing
    def add(self, vectors: np.ndarray, ids: list[str], metadata: list[dict[str, Any]] | None = None) -> None:
        from qdrant_client import models

        v = unit_rows(np.asarray(vectors), self.dim, "vectors")
        present = {
            p.payload["id"]
            for p in self._client.retrieve(self._collection, [point_id(i) for i in ids])
            if p.payload
        }
        meta = check_items(ids, metadata, len(v), present)
        points = [
            models.PointStruct(id=point_id(i), vector=row.tolist(), payload={"id": i, "metadata": m})
            for i, row, m in zip(ids, v, meta)
        ]
        for start in range(0, len(points), 1024):
            self._client.upsert(self._collection, points[start : start + 1024], wait=True)

    def delete(self, ids: list[str]) -> None:
        from qdrant_client import models

        ids = list(ids)
        found = {
            p.payload["id"]
            for p in self._client.retrieve(self._collection, [point_id(i) for i in ids])
            if p.payload
        }
        missing = [i for i in ids if i not in found]
        if missing:
            raise ItemNotFoundError(f"cannot delete {missing[:5]}: not in the index at {self.path}")
        self._client.delete(
            self._collection, models.PointIdsList(points=[point_id(i) for i in ids]), wait=True
        )

    def save(self) -> None:
        """Nothing to do: Qdrant has stored every change when add/delete returned."""

    def close(self) -> None:
        self._client.close()
        self._closed = True


def qdrant_filter(where: dict[str, Any]) -> Any:
    """The Index filter ``where`` as a Qdrant ``Filter`` over ``metadata.<field>``."""
    from qdrant_client import models

    if not isinstance(where, dict):
        raise ConfigError(f"filter must be a dict of field -> condition, got {type(where).__name__}")
    must: list[Any] = []
    must_not: list[Any] = []
    for field, cond in where.items():
        key = f"metadata.{field}"
        ops = cond if isinstance(cond, dict) else {"in" if isinstance(cond, list) else "eq": cond}
        for op, arg in ops.items():
            if op in ("gt", "gte", "lt", "lte"):
                if isinstance(arg, bool) or not isinstance(arg, (int, float)):
                    raise ConfigError(f"filter on {field!r}: {op} needs a number, got {arg!r}")
                must.append(models.FieldCondition(key=key, range=models.Range(**{op: arg})))
            elif op in ("eq", "ne"):
                (must if op == "eq" else must_not).append(_equal(key, arg))
            elif op == "in":
                if not isinstance(arg, list):
                    raise ConfigError(f"filter on {field!r}: 'in' needs a list of values, got {arg!r}")
                must.append(models.Filter(should=[_equal(key, a) for a in arg] or [_never()]))
            else:
                raise ConfigError(f"filter on {field!r}: unknown operator {op!r}")
    return models.Filter(must=must or None, must_not=must_not or None)


def _equal(key: str, value: Any) -> Any:
    from qdrant_client import models

    if isinstance(value, float):  # MatchValue takes str, int and bool only
        return models.FieldCondition(key=key, range=models.Range(gte=value, lte=value))
    if not isinstance(value, (str, int, bool)):
        raise ConfigError(f"filter on {key.removeprefix('metadata.')!r}: cannot match {value!r} in Qdrant")
    return models.FieldCondition(key=key, match=models.MatchValue(value=value))


def _never() -> Any:
    from qdrant_client import models

    return models.HasIdCondition(has_id=[])
