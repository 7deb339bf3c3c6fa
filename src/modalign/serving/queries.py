"""Parse a query request (JSON text, or a multipart image/audio upload) into one model input.

Kept apart from the routes so ``/search`` and ``/embed`` read their bodies the same way, and so the
OpenAPI schema of both content types is written once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modalign.serving.guards import BodyTooLarge
from modalign.serving.media import decode_audio, decode_image
from modalign.serving.settings import ServeSettings

RANGE_OPS = ("gt", "gte", "lt", "lte")
UPLOAD_KINDS = ("image", "audio")


class QueryError(Exception):
    """A request that cannot be answered as sent: ``status`` (400/415/422) and a clear message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class TextQuery(BaseModel):
    """JSON body of ``POST /search`` and ``POST /embed``."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, description="the query text")
    k: int = Field(10, ge=1, description="number of results (search only)")
    filter: dict[str, Any] | None = Field(
        None,
        description='metadata filter: {"field": value}, {"field": [v1, v2]} or {"field": {"gte": a}}',
    )
    modality: str | None = Field(None, description="the model's text modality (needed when it has several)")


@dataclass(frozen=True)
class Query:
    """One parsed query: what to embed (``payload`` for a modality of ``kind``) and how to search."""

    kind: str
    payload: Any
    modality: str | None
    k: int
    filter: dict[str, Any] | None


def openapi_body(max_k: int) -> dict[str, Any]:
    """The ``requestBody`` of the query routes: JSON text or a multipart upload."""
    text = TextQuery.model_json_schema()
    text["properties"]["k"]["maximum"] = max_k
    upload = {
        "type": "object",
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "an image file"},
            "audio": {"type": "string", "format": "binary", "description": "a WAV, FLAC or OGG file"},
            "k": {"type": "integer", "minimum": 1, "maximum": max_k, "default": 10},
            "filter": {"type": "string", "description": "the metadata filter as a JSON object"},
            "modality": {"type": "string"},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": text}, "multipart/form-data": {"schema": upload}},
        }
    }


async def read_query(request: Any, settings: ServeSettings) -> Query:
    """Parse a Starlette request into a :class:`Query`; raises :class:`QueryError`."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        return _json_query(await request.body(), settings)
    if ctype == "multipart/form-data":
        return await _upload_query(request, settings)
    raise QueryError(
        415, "send application/json with a text query, or multipart/form-data with an image or audio file"
    )


def _json_query(body: bytes, settings: ServeSettings) -> Query:
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise QueryError(422, f"the body is not valid JSON: {e}") from None
    try:
        q = TextQuery.model_validate(raw)
    except ValidationError as e:
        raise QueryError(422, _validation_message(e)) from None
    if len(q.text) > settings.max_text_chars:
        raise QueryError(
            422, f"text is {len(q.text)} characters, more than the limit of {settings.max_text_chars}"
        )
    return Query("text", q.text, q.modality, check_k(q.k, settings), check_filter(q.filter))


async def _upload_query(request: Any, settings: ServeSettings) -> Query:
    try:
        form = await request.form(max_files=1, max_fields=8, max_part_size=settings.max_body_bytes)
    except BodyTooLarge:
        raise
    except Exception as e:  # multipart parse errors: malformed boundaries, too many parts
        raise QueryError(422, f"cannot read the multipart form: {e}") from None
    try:
        from starlette.concurrency import run_in_threadpool

        # decoding is CPU work: off the event loop, so other requests keep being served meanwhile
        return await run_in_threadpool(_form_query, form, await _one_upload(form), settings)
    finally:
        await form.close()  # removes the spooled temporary files


async def _one_upload(form: Any) -> tuple[str, bytes]:
    from starlette.datastructures import UploadFile

    unknown = set(form.keys()) - {*UPLOAD_KINDS, "k", "filter", "modality"}
    if unknown:
        raise QueryError(
            422, f"unknown form fields {sorted(unknown)}; use image or audio, k, filter, modality"
        )
    files = [(kind, form.get(kind)) for kind in UPLOAD_KINDS if form.get(kind) is not None]
    if len(files) != 1 or not isinstance(files[0][1], UploadFile):
        raise QueryError(422, "upload exactly one file, in the form field 'image' or 'audio'")
    kind, upload = files[0]
    assert isinstance(upload, UploadFile)
    return kind, await upload.read()


def _form_query(form: Any, upload: tuple[str, bytes], settings: ServeSettings) -> Query:
    kind, data = upload
    if kind == "image":
        payload: Any = decode_image(data, settings.max_image_pixels)
    else:
        payload = decode_audio(data, settings.max_audio_seconds)
    k = _form_int(form.get("k"), "k", 10)
    raw_filter = form.get("filter")
    filt = None
    if isinstance(raw_filter, str) and raw_filter.strip():
        try:
            filt = json.loads(raw_filter)
        except ValueError as e:
            raise QueryError(422, f"form field filter is not valid JSON: {e}") from None
    modality = form.get("modality")
    return Query(
        kind,
        payload,
        modality if isinstance(modality, str) and modality else None,
        check_k(k, settings),
        check_filter(filt),
    )


def _form_int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        raise QueryError(422, f"form field {name} must be a whole number, got {str(value)[:40]!r}") from None


def check_k(k: int, settings: ServeSettings) -> int:
    if not 1 <= k <= settings.max_k:
        raise QueryError(422, f"k must be between 1 and {settings.max_k}, got {k}")
    return k


def check_filter(filt: Any) -> dict[str, Any] | None:
    """The filter as sent, refused unless each field maps to a scalar, a list of them, or a range."""
    if filt is None:
        return None
    if not isinstance(filt, dict):
        raise QueryError(422, "filter must be a JSON object mapping metadata fields to values")
    for field, cond in filt.items():
        if isinstance(cond, dict):
            bad = set(cond) - set(RANGE_OPS)
            if not cond or bad:
                raise QueryError(422, f"filter.{field}: a range takes the keys {', '.join(RANGE_OPS)}")
            for op, bound in cond.items():
                if not _is_number(bound):
                    raise QueryError(422, f"filter.{field}.{op} must be a finite number, got {bound!r}")
        elif isinstance(cond, list):
            if not cond or not all(_is_scalar(v) for v in cond):
                raise QueryError(422, f"filter.{field}: a list must hold strings, numbers or booleans")
        elif not _is_scalar(cond):
            raise QueryError(422, f"filter.{field} must be a string, number, boolean, list or range")
    return filt


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (str, bool)) or _is_number(v)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
