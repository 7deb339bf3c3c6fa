"""create_app: the FastAPI service over an index and a model (routes only; guards in guards.py).

Routes: ``POST /search``, ``POST /embed``, ``GET /items/{id}``, ``GET /items/{id}/media``,
``GET /items/{id}/similar``, ``GET /info``, ``GET /health``, the web page at ``/`` and its files
under ``/static/``. Errors are JSON ``{"detail": "..."}`` with a 4xx status; never a bare 500.
The service never fetches a URL a client sends: queries are text or uploaded bytes only.
FastAPI is imported here at module level (route annotations must resolve); ``modalign.cli`` imports
this package only inside ``modalign serve``.
"""

from __future__ import annotations

import contextlib
import json
import math
import mimetypes
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from modalign.errors import DataError, ModalignError
from modalign.serving.batcher import MicroBatcher
from modalign.serving.guards import ApiKeyGuard, BodyLimit, BodyTooLarge, Timeout
from modalign.serving.queries import Query, QueryError, check_filter, openapi_body, read_query
from modalign.serving.settings import ServeSettings


class SearchIndex(Protocol):
    """What the service needs of an index (``modalign.search.Index`` provides it)."""

    dim: int
    info: dict[str, Any]

    def __len__(self) -> int: ...

    def search(
        self, queries: np.ndarray, k: int = 10, filter: dict[str, Any] | None = None
    ) -> list[list[Any]]: ...

    def get(self, id: str) -> tuple[np.ndarray, dict[str, Any]]: ...


class ItemNotFound(Exception):
    """An id the index does not hold, or media that may not be served (answered as 404)."""


def create_app(index: SearchIndex, model: Any, settings: ServeSettings | None = None) -> Any:
    """The ASGI app serving ``index`` with query embeddings from ``model`` (a MultimodalModel).

    The returned app is wrapped in the guards (API key, body cap, timeout); its FastAPI app is
    ``app.fastapi`` and its micro-batcher ``app.batcher``.
    """
    settings = settings if settings is not None else ServeSettings()
    batcher = MicroBatcher(model.encode, index.search, settings.max_batch, settings.batch_wait_ms / 1000)
    kinds = {name: spec.kind for name, spec in model.specs.items()}
    indexed = index.info.get("modality")
    if len(index) and index.dim != model.embed_dim:
        raise DataError(f"the index holds {index.dim}-d vectors but the model embeds in {model.embed_dim}-d")

    api = FastAPI(
        title="modalign search",
        description="Cross-modal search over a modalign index.",
        version="1",
        lifespan=_closing(batcher),
        docs_url=None,  # the interactive docs load their scripts from a CDN: the schema stays
        redoc_url=None,
    )
    api.state.batcher = batcher

    @api.exception_handler(QueryError)
    async def _query_error(request: Request, e: QueryError) -> JSONResponse:
        return JSONResponse({"detail": e.message}, status_code=e.status)

    @api.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
        # the streamed body passed the cap while a route read it (no Content-Length, or a false one)
        limit = settings.max_body_bytes
        return JSONResponse({"detail": f"request body larger than the service's limit of {limit} bytes"}, 413)

    @api.exception_handler(ItemNotFound)
    async def _not_found(request: Request, e: ItemNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=404)

    @api.exception_handler(ModalignError)
    async def _modalign_error(request: Request, e: ModalignError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=422)

    @api.exception_handler(Exception)
    async def _internal(request: Request, e: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error ({type(e).__name__})"}, status_code=500)

    def modality_for(q: Query) -> str:
        if q.modality is not None:
            if kinds.get(q.modality) != q.kind:
                names = [n for n, k in kinds.items() if k == q.kind]
                raise QueryError(
                    422, f"modality {q.modality!r} is not a {q.kind} modality of the model; use {names}"
                )
            return q.modality
        names = [n for n, k in kinds.items() if k == q.kind]
        if not names:
            raise QueryError(422, f"the model has no {q.kind} modality; it has {sorted(set(kinds.values()))}")
        if len(names) > 1:
            raise QueryError(
                422, f"the model has several {q.kind} modalities {names}: name one in 'modality'"
            )
        return names[0]

    async def search(vector: np.ndarray, k: int, filt: dict[str, Any] | None) -> list[dict[str, Any]]:
        from starlette.concurrency import run_in_threadpool

        hits = await run_in_threadpool(index.search, vector[None, :], k, filt)
        return [hit_json(h) for h in hits[0]]

    def item(item_id: str) -> tuple[np.ndarray, dict[str, Any]]:
        try:
            return index.get(item_id)
        except (KeyError, ModalignError):
            raise ItemNotFound(f"no item with id {item_id!r} in the index") from None

    query_body = openapi_body(settings.max_k)

    @api.post("/search", openapi_extra=query_body, summary="Search with a text query or an uploaded file")
    async def search_route(request: Request) -> JSONResponse:
        """Embed the query (JSON text, or a multipart ``image``/``audio`` file) and return the k
        nearest items: ``{"results": [{"id", "score", "metadata"}]}``, best first."""
        q = await read_query(request, settings)
        hits = await batcher.search(q.payload, modality_for(q), q.k, q.filter)
        return JSONResponse({"results": [hit_json(h) for h in hits]})

    @api.post("/embed", openapi_extra=query_body, summary="Embed a text query or an uploaded file")
    async def embed_route(request: Request) -> dict[str, Any]:
        """The query's unit-norm embedding: ``{"modality", "embedding"}``."""
        q = await read_query(request, settings)
        modality = modality_for(q)
        vector = await batcher.embed(q.payload, modality)
        return {"modality": modality, "embedding": [float(x) for x in vector]}

    @api.get("/items/{item_id}", summary="An indexed item's metadata")
    async def item_route(item_id: str) -> dict[str, Any]:
        _, metadata = item(item_id)
        return {"id": item_id, "metadata": jsonable(metadata)}

    @api.get("/items/{item_id}/media", summary="An indexed item's media file", response_class=FileResponse)
    async def media_route(item_id: str) -> Any:
        _, metadata = item(item_id)
        path = media_path(index.info, metadata, item_id)
        return FileResponse(path, **media_response_args(path))

    @api.get("/items/{item_id}/similar", summary="The items nearest to an indexed item")
    async def similar_route(item_id: str, k: int = 10, filter: str | None = None) -> dict[str, Any]:
        if not 1 <= k <= settings.max_k:
            raise QueryError(422, f"k must be between 1 and {settings.max_k}, got {k}")
        filt = None
        if filter is not None and filter.strip():
            try:
                filt = check_filter(json.loads(filter))
            except ValueError as e:
                raise QueryError(422, f"filter is not valid JSON: {e}") from None
        vector, _ = item(item_id)
        vector = np.asarray(vector, dtype=np.float32)
        # one extra hit, so the item itself can be dropped
        hits = await search(vector, min(k + 1, len(index)), filt) if len(index) else []
        return {"results": [h for h in hits if h["id"] != item_id][:k]}

    @api.get("/info", summary="What the index holds and which queries the model takes")
    async def info_route() -> dict[str, Any]:
        return {
            "items": len(index),
            "dim": index.dim,
            "modality": indexed,
            "kind": kinds.get(indexed) if isinstance(indexed, str) else None,
            "media": index.info.get("media_column") is not None and index.info.get("corpus_root") is not None,
            "query_kinds": sorted({k for k in kinds.values() if k in ("text", "image", "audio")}),
        }

    @api.get("/health", summary="Liveness (no API key needed)")
    async def health_route() -> dict[str, Any]:
        return {"status": "ok"}

    static = resources.files("modalign.serving") / "static"

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> Any:
        return HTMLResponse((static / "index.html").read_text(encoding="utf-8"), headers=PAGE_HEADERS)

    api.mount("/static", StaticFiles(directory=str(static)), name="static")

    app: Any = api
    if settings.cors_origins:
        from starlette.middleware.cors import CORSMiddleware

        app = CORSMiddleware(
            app,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "Content-Type"],
        )
    app = Timeout(app, settings.timeout_s)
    app = BodyLimit(app, settings.max_body_bytes)
    if settings.api_key is not None:
        app = ApiKeyGuard(app, settings.api_key)  # outermost: nothing is read before the key is checked
    app.fastapi = api
    app.batcher = batcher
    return app


def _closing(batcher: MicroBatcher) -> Any:
    """A lifespan that stops the batcher's worker and model thread when the server shuts down."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        batcher.close()

    return lifespan


# the page loads only its own files, and media as blob: URLs made from /items/{id}/media
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; media-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
# corpus files are untrusted: an HTML or SVG file must never run as a page of this origin
INLINE_MEDIA = ("image/", "audio/", "video/")


def media_response_args(path: Path) -> dict[str, Any]:
    """FileResponse arguments: images, audio and video inline, anything else (and SVG) as a download,
    always sandboxed and never content-sniffed."""
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'"}
    if not media_type.startswith(INLINE_MEDIA) or media_type == "image/svg+xml":
        return {"media_type": "application/octet-stream", "headers": headers, "filename": path.name}
    return {"media_type": media_type, "headers": headers}


def media_path(info: dict[str, Any], metadata: dict[str, Any], item_id: str) -> Path:
    """The item's media file, only when it lies under the index's corpus root."""
    from modalign.data.manifest import resolve_inside

    column, root = info.get("media_column"), info.get("corpus_root")
    if column is None or root is None:
        raise ItemNotFound("this index has no media files (no media column or corpus root)")
    cell = metadata.get(column)
    if not isinstance(cell, str) or not cell:
        raise ItemNotFound(f"item {item_id!r} has no media file")
    try:
        path = resolve_inside(cell, root)
    except DataError:
        raise ItemNotFound(f"item {item_id!r} has no media file under the corpus root") from None
    if not path.is_file():
        raise ItemNotFound(f"the media file of item {item_id!r} is missing")
    return path


def hit_json(hit: Any) -> dict[str, Any]:
    return {"id": str(hit.id), "score": jsonable(float(hit.score)), "metadata": jsonable(hit.metadata)}


def jsonable(value: Any) -> Any:
    """``value`` with NumPy scalars/arrays as Python values and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
