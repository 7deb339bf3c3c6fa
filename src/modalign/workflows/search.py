"""``modalign index build`` and ``modalign search``: embeddings -> Index, and queries against it.

A query is text, an image file, an audio file, or several of them composed (weighted sum, or
Symile's multilinear product for models trained with ``symile``: :mod:`modalign.search.compose`),
or ``--like ID``: the items nearest to an indexed item's own vector.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modalign.errors import ConfigError
from modalign.search import Hit, Index
from modalign.search.compose import compose
from modalign.search.embeddings import read_embeddings

QUERY_KINDS = ("text", "image", "audio")
_OPS = ((">=", "gte"), ("<=", "lte"), ("!=", "ne"), (">", "gt"), ("<", "lt"), ("=", "eq"))


def build_index(emb_dir: Path, out: Path, kind: str = "flat", params: dict[str, Any] | None = None) -> Index:
    """An Index at ``out`` of the finished embeddings in ``emb_dir``; ``info`` says where they came from."""
    emb = read_embeddings(emb_dir)
    plan = emb.plan
    info = {
        "model_dir": plan["model_dir"],
        "modality": plan["modality"],
        "modality_kind": plan["kind"],
        "media_column": plan["media_column"],
        "corpus_root": plan["corpus_root"],
        "manifest": plan["manifest"],
        "embeddings": str(Path(emb_dir).resolve()),
    }
    return Index.build(out, emb.vectors, emb.ids, emb.metadata, kind=kind, info=info, **(params or {}))


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["m=16", "ef_search=128"]`` -> ``{"m": 16, "ef_search": 128}`` (values as JSON when they parse)."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--param {item!r}: write NAME=VALUE, e.g. ef_search=128")
        out[name.strip()] = _scalar(value.strip())
    return out


def parse_filters(exprs: list[str]) -> dict[str, Any] | None:
    """CLI filters -> an Index filter; several are ANDed.

    ``split=test`` (equality; ``label=3`` matches the number 3 and the text "3"), ``label=cat|dog``
    (any of), ``year>=2000``, ``year<2010``, ``>``, ``<=``, ``!=``, or a JSON object in the Index's
    own filter form: ``{"year": {"gte": 2000}}``.
    """
    where: dict[str, Any] = {}
    for expr in exprs:
        if expr.lstrip().startswith("{"):
            try:
                obj = json.loads(expr)
            except ValueError as e:
                raise ConfigError(f"--filter {expr!r} is not valid JSON ({e})") from None
            _merge(where, obj)
            continue
        split = _split(expr)
        if split is None:
            raise ConfigError(f"--filter {expr!r}: write FIELD=VALUE, FIELD>=NUMBER, ... (e.g. split=test)")
        field, op, value = split
        if op == "eq":
            options = [v for part in value.split("|") for v in _spellings(part.strip())]
            _merge(where, {field: options})
        else:
            parsed = _scalar(value)
            if op != "ne" and (isinstance(parsed, bool) or not isinstance(parsed, (int, float))):
                raise ConfigError(f"--filter {expr!r}: {op} needs a number, got {value!r}")
            _merge(where, {field: {op: parsed}})
    return where or None


def trained_with_symile(model_dir: Path) -> bool:
    """Whether the run that wrote ``model_dir`` (or the run directory itself) used the symile objective."""
    import yaml

    for candidate in (Path(model_dir) / "config.yaml", Path(model_dir).parent / "config.yaml"):
        if candidate.is_file():
            cfg = yaml.safe_load(candidate.read_text()) or {}
            return any(o.get("name") == "symile" for o in cfg.get("objectives") or [] if isinstance(o, dict))
    return False


def search(
    index: Index,
    *,
    model_dir: Path | None = None,
    queries: dict[str, str | None] | None = None,
    like: str | None = None,
    k: int = 10,
    where: dict[str, Any] | None = None,
    weights: dict[str, float] | None = None,
    combine: str = "auto",
) -> list[Hit]:
    """The ``k`` best hits for a query given as ``{"text": ..., "image": path, "audio": path}``
    (one or several), or for ``like`` (an indexed item's id; the item itself is left out).

    Args:
        model_dir: the model that embeds the query (default: the one recorded in the index).
        combine: ``sum``, ``symile``, or ``auto`` (symile when the model was trained with it).
    """
    given = {m: q for m, q in (queries or {}).items() if q is not None}
    if like is not None:
        if given:
            raise ConfigError("--like finds items similar to an indexed one: give no --text/--image/--audio")
        vector, _ = index.get(like)
        hits = index.search(vector, k=k + 1, filter=where)[0]
        return [h for h in hits if h.id != like][:k]
    if not given:
        raise ConfigError("give a query: --text, --image, --audio (several compose) or --like ID")
    model_path = Path(model_dir) if model_dir is not None else Path(index.info.get("model_dir", ""))
    if model_dir is None and not index.info.get("model_dir"):
        raise ConfigError(f"the index at {index.path} records no model: pass --model MODEL_DIR")
    from modalign.model import load

    model = load(model_path)
    mode = ("symile" if trained_with_symile(model_path) else "sum") if combine == "auto" else combine
    vector, scale = encode_query(model, given, weights=weights, mode=mode)
    hits = index.search(vector, k=k, filter=where)[0]
    return [replace(h, score=h.score * scale) for h in hits] if scale != 1.0 else hits


def encode_query(
    model: Any, queries: dict[str, Any], *, weights: dict[str, float] | None = None, mode: str = "sum"
) -> tuple[np.ndarray, float]:
    """``(unit query (D,), score scale)`` for ``{"text"|"image"|"audio": payload}`` (see ``compose``).

    A payload is what ``model.encode`` takes: text, a file path, an array. Each kind goes through
    the model's modality of that kind. With one modality, ``symile`` is plain cosine.
    """
    embeddings = {kind: model.encode([q], _modality_of(model, kind))[0] for kind, q in queries.items()}
    if mode == "symile" and len(embeddings) == 1:
        mode = "sum"  # the product of one embedding is the embedding itself
    return compose(embeddings, weights, mode)


def hits_json(hits: list[Hit]) -> dict[str, Any]:
    """The JSON the CLI prints with ``--json`` (the same shape as the service's ``POST /search``)."""
    return {"results": [{"id": h.id, "score": h.score, "metadata": h.metadata} for h in hits]}


def hits_lines(hits: list[Hit], width: int = 60) -> list[str]:
    """One line per hit: rank, score, id, then the metadata cut to ``width`` characters."""
    if not hits:
        return ["no results"]
    pad = max(len(h.id) for h in hits)
    lines = []
    for rank, h in enumerate(hits, 1):
        meta = json.dumps(h.metadata, ensure_ascii=False, separators=(", ", "="))[1:-1].replace('"', "")
        meta = meta if len(meta) <= width else meta[: width - 3] + "..."
        lines.append(f"{rank:>3}  {h.score:7.4f}  {h.id:<{pad}}  {meta}")
    return lines


def _modality_of(model: Any, kind: str) -> str:
    names = [name for name, spec in model.specs.items() if spec.kind == kind]
    if not names:
        raise ConfigError(f"the model has no {kind} modality (it has {model.modalities})")
    if len(names) > 1:
        if kind in names:
            return kind
        raise ConfigError(f"the model has several {kind} modalities {names}; cannot tell which to query")
    return names[0]


def _split(expr: str) -> tuple[str, str, str] | None:
    """``"year>=2000"`` -> ``("year", "gte", "2000")``, split at the first operator; None if none."""
    for token, op in _OPS:
        field, sep, value = expr.partition(token)
        if sep and field.strip() and not any(c in field for c in "<>=!"):
            return field.strip(), op, value.strip()
    return None


def _scalar(value: str) -> Any:
    try:
        parsed = json.loads(value)
    except ValueError:
        return value
    return parsed if isinstance(parsed, (int, float, bool)) or parsed is None else value


def _spellings(value: str) -> list[Any]:
    """``3`` as the number and as the text (CSV manifests keep numbers as text)."""
    parsed = _scalar(value)
    return [parsed] if isinstance(parsed, str) else [parsed, value]


def _merge(where: dict[str, Any], new: Any) -> None:
    if not isinstance(new, dict):
        raise ConfigError(f"a JSON --filter must be an object of field -> condition, got {new!r}")
    for field, cond in new.items():
        old = where.get(field)
        if old is None:
            where[field] = cond
        elif isinstance(old, dict) and isinstance(cond, dict) and not set(old) & set(cond):
            where[field] = {**old, **cond}  # year>=2000 and year<2010: one range
        else:
            raise ConfigError(f"--filter gives {field!r} two conditions that cannot both be kept")
