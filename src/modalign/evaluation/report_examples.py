"""Retrieval examples for ``report.html``: a few queries with their top-5 candidates, as HTML cells
with embedded thumbnails, audio players or text (data URIs: the page stays self-contained)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_AUDIO_MAX_BYTES = 400_000  # larger clips are named, not embedded
_MIME = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg", ".ogg": "audio/ogg"}


def sample_media(
    manifest: Any, ids: Sequence[Hashable], specs: dict[str, tuple[str, str]], id_column: str
) -> dict:
    """``{id: {modality: (kind, value)}}`` for ``ids``: file paths (resolved) or texts.

    Args:
        manifest: a :class:`~modalign.data.manifest.Manifest`.
        specs: ``{modality: (kind, column)}``.
    """
    wanted = set(ids)
    out: dict[Hashable, dict[str, tuple[str, Any]]] = {}
    for row in manifest.rows:
        key = row.get(id_column)
        if key not in wanted:
            continue
        media = {}
        for m, (kind, column) in specs.items():
            value = row.get(column)
            if isinstance(value, str) and kind in ("image", "audio"):
                path = Path(value)
                media[m] = (kind, str(path if path.is_absolute() else manifest.base_dir / path))
            elif isinstance(value, str):
                media[m] = ("text", value)
        out[key] = media
    return out


def _cell(item: tuple[str, Any] | None, ok: bool | None) -> str:
    border = "" if ok is None else (" class='hit'" if ok else " class='miss'")
    if item is None:
        return f"<td{border}>–</td>"
    kind, value = item
    body = html.escape(str(value))
    try:
        if kind == "image":
            from PIL import Image

            with Image.open(value) as im:
                im = im.convert("RGB")
                im.thumbnail((96, 96))
                if max(im.size) < 48:  # tiny images (8x8 digits) are enlarged, pixels kept sharp
                    scale = 48 // max(im.size)
                    im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
                buf = io.BytesIO()
                im.save(buf, format="PNG")
            uri = base64.b64encode(buf.getvalue()).decode()
            body = f"<img alt='{html.escape(Path(value).name)}' src='data:image/png;base64,{uri}'>"
        elif kind == "audio":
            path = Path(value)
            mime = _MIME.get(path.suffix.lower())
            if mime is not None and path.stat().st_size <= _AUDIO_MAX_BYTES:
                uri = base64.b64encode(path.read_bytes()).decode()
                player = f"<audio controls preload='none' src='data:{mime};base64,{uri}'></audio>"
                body = f"{player}<br>{html.escape(path.name)}"
            else:
                body = html.escape(path.name)
    except (OSError, ValueError):
        body = html.escape(Path(str(value)).name) + " (unreadable)"
    return f"<td{border}>{body}</td>"


def examples_table(
    q: str,
    t: str,
    emb: dict[str, np.ndarray],
    present: dict[str, np.ndarray],
    ids: Sequence[Hashable],
    keys: Sequence[Hashable],
    media: dict[Hashable, dict[str, tuple[str, Any]]],
    n_queries: int = 4,
    top: int = 5,
) -> str:
    """HTML table: ``n_queries`` evenly spaced queries of ``q`` and their top candidates of ``t``
    (ties to the lower index); green = a positive, red = not."""
    qi, ti = np.flatnonzero(present[q]), np.flatnonzero(present[t])
    if qi.size == 0 or ti.size == 0:
        return ""
    picks = qi[np.linspace(0, qi.size - 1, min(n_queries, qi.size)).astype(int)]
    qn = emb[q][picks] / np.linalg.norm(emb[q][picks], axis=1, keepdims=True).clip(1e-12)
    tn = emb[t][ti] / np.linalg.norm(emb[t][ti], axis=1, keepdims=True).clip(1e-12)
    s = qn @ tn.T  # (n, C)
    head = "".join(f"<th>{i + 1}</th>" for i in range(min(top, ti.size)))
    rows = []
    for row, i in zip(s, picks):
        order = np.lexsort((np.arange(row.size), -row))[:top]  # score high to low, then index
        cells = [_cell(media.get(ids[i], {}).get(q), None)]
        for j in order:
            c = ti[j]
            cells.append(_cell(media.get(ids[c], {}).get(t), keys[c] == keys[i]))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    title = f"<h3>{html.escape(q)} → {html.escape(t)}: query, then its top {min(top, ti.size)}</h3>"
    return f"{title}<table class='examples'><tr><th>query</th>{head}</tr>{''.join(rows)}</table>"
