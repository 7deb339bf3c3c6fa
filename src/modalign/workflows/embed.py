"""``modalign embed``: a saved model + a manifest -> one modality's embeddings, in resumable chunks.

The chunk format is :mod:`modalign.search.embeddings`. Rerunning the same command over the same
output directory continues after the last finished chunk, and the result is byte-identical to an
uninterrupted run (same chunks, same batches). A different model, modality, manifest (by
checksum), chunk size or batch size is refused rather than mixed in.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalign.data.dataset import load_samples
from modalign.data.manifest import Manifest, read_manifest
from modalign.errors import ConfigError
from modalign.model import MultimodalModel, load
from modalign.search.embeddings import (
    FORMAT,
    VERSION,
    chunk_intact,
    jsonable,
    read_plan,
    write_chunk,
    write_plan,
)
from modalign.types import inputs_to

# absent rows are counted under this name (load_samples calls them no_modality)
_ABSENT = "absent"


@dataclass
class EmbedSummary:
    """What a run did: rows embedded, skipped per reason, chunks written now and before."""

    out: Path
    embedded: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    chunks_written: int = 0
    chunks_resumed: int = 0


def run_embed(
    model_dir: Path,
    manifest_path: Path,
    modality: str,
    out: Path,
    *,
    batch_size: int = 64,
    chunk_rows: int = 4096,
    id_column: str = "id",
    show_progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
    engine: str = "local",
    address: str | None = None,
    worker_hook: Callable[[int], None] | None = None,
) -> EmbedSummary:
    """Embed ``modality`` of every manifest row into ``out`` (created, or resumed when it holds a plan).

    Args:
        chunk_rows: manifest rows per chunk (the unit of resumption).
        on_chunk: called with each chunk number once it is durable (progress, tests).
        engine: "local" embeds in this process; "ray" spreads the chunks over a Ray cluster
            (``address``, or the running/a new local one) with byte-identical output.
        worker_hook: (ray) called in the worker with the chunk number before embedding it
            (fault injection in tests).

    Raises:
        ConfigError: unknown modality, bad sizes, or ``out`` holds another run or other files.
        DataError: the manifest cannot be read.
    """
    if engine not in ("local", "ray"):
        raise ConfigError(f"engine must be 'local' or 'ray', got {engine!r}")
    if address is not None and engine != "ray":
        raise ConfigError("--address is the Ray cluster's: it needs --engine ray")
    for name, value in (("batch_size", batch_size), ("chunk_rows", chunk_rows)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    model = load(model_dir)
    if modality not in model.specs:
        raise ConfigError(f"the model in {model_dir} has no modality {modality!r}; it has {model.modalities}")
    manifest = read_manifest(manifest_path)
    spec = model.specs[modality]
    plan = {
        "format": FORMAT,
        "version": VERSION,
        "model_dir": str(Path(model_dir).resolve()),
        "modality": modality,
        "kind": spec.kind,
        "media_column": spec.column,
        "manifest": str(Path(manifest_path).resolve()),
        "manifest_crc32": zlib.crc32(Path(manifest_path).read_bytes()),
        "corpus_root": str(manifest.base_dir),
        "id_column": id_column,
        "rows": len(manifest.rows),
        "chunk_rows": chunk_rows,
        "batch_size": batch_size,
        "dim": model.embed_dim,
    }
    chunks = _resume(out, plan)
    summary = EmbedSummary(out, chunks_resumed=len(chunks))
    for entry in chunks:
        summary.embedded += entry["embedded"]
        summary.skipped.update(entry["skipped"])
    n_chunks = -(-len(manifest.rows) // chunk_rows)
    model.eval()
    ctx: Any = nullcontext()
    if show_progress:
        from rich.progress import Progress

        ctx = Progress(transient=True)
    with ctx as bar:
        task = None
        if bar is not None:
            task = bar.add_task(f"embedding {modality}", total=len(manifest.rows))
            bar.update(task, completed=min(len(chunks) * chunk_rows, len(manifest.rows)))
        todo = range(len(chunks), n_chunks)
        if engine == "ray":
            from modalign.workflows.embed_ray import embed_chunks_on_ray

            done = embed_chunks_on_ray(plan, todo, address=address, worker_hook=worker_hook)
        else:
            done = (
                (c, embed_chunk(model, manifest, modality, c, chunk_rows, batch_size, id_column))
                for c in todo
            )
        for c, (vectors, items, skipped) in done:
            chunks.append(write_chunk(out, c, vectors, items, skipped))
            write_plan(out, {**plan, "chunks": chunks, "done": c == n_chunks - 1})
            summary.chunks_written += 1
            summary.embedded += len(items)
            summary.skipped.update(skipped)
            if bar is not None:
                bar.update(task, completed=min((c + 1) * chunk_rows, len(manifest.rows)))
            if on_chunk is not None:
                on_chunk(c)
    if n_chunks == 0:
        write_plan(out, {**plan, "chunks": [], "done": True})
    return summary


def embed_chunk(
    model: MultimodalModel,
    manifest: Manifest,
    modality: str,
    c: int,
    chunk_rows: int,
    batch_size: int,
    id_column: str,
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, int]]:
    """Chunk ``c``'s vectors, item lines and skip counts (the same bytes whichever process runs it)."""
    rows = range(c * chunk_rows, min((c + 1) * chunk_rows, len(manifest.rows)))
    source = model.specs[modality].source()
    samples = load_samples(manifest, [source], rows, id_column=id_column, on_error="skip")
    skipped = {(_ABSENT if r == "no_modality" else r): n for r, n in samples.skipped.items()}
    vectors = _embed(model, modality, samples.data[modality], samples.ids, batch_size)
    items = [
        {"id": i, "row": r, "metadata": _metadata(manifest.rows[r], id_column)}
        for i, r in zip(samples.ids, samples.rows)
    ]
    return vectors, items, skipped


def _resume(out: Path, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The finished chunks to keep (intact ones, in order), after checking ``out`` is this run's."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a directory")
    previous = read_plan(out) if out.is_dir() else None
    if previous is None:
        if out.is_dir() and any(p for p in out.iterdir() if not p.name.startswith(".")):
            raise ConfigError(f"--out {out} is not empty and holds no embedding run: choose a new directory")
        out.mkdir(parents=True, exist_ok=True)
        return []
    changed = [k for k in plan if previous.get(k) != plan[k]]
    if changed:
        raise ConfigError(
            f"--out {out} holds embeddings of another run (it differs in {', '.join(changed)}): choose a new "
            "directory or delete it"
        )
    kept: list[dict[str, Any]] = []
    for entry in previous["chunks"]:
        if entry["chunk"] != len(kept) or not chunk_intact(out, entry):
            break  # recompute from the first damaged or missing chunk on
        kept.append(entry)
    return kept


@torch.no_grad()
def _embed(
    model: MultimodalModel,
    modality: str,
    items: list[torch.Tensor | None],
    ids: list[str],
    batch_size: int,
) -> np.ndarray:
    """(n, D) float32 unit rows of already-loaded inputs, ``batch_size`` rows per forward pass."""
    spec, tower = model.specs[modality], model.tower(modality)
    out = np.zeros((len(items), model.embed_dim), dtype=np.float32)
    for start in range(0, len(items), batch_size):
        batch = items[start : start + batch_size]
        present = torch.ones(len(batch), dtype=torch.bool, device=model.device)
        emb, _ = tower.embed(inputs_to(spec.transform.collate(batch), model.device), present)
        out[start : start + len(batch)] = emb.float().cpu().numpy()
    bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
    if len(bad):
        raise model.nonfinite_error(modality, [ids[i] for i in bad], len(items), "rows", "with ids")
    return out


def _metadata(row: dict[str, Any], id_column: str) -> dict[str, Any]:
    return {k: jsonable(v) for k, v in row.items() if k != id_column}


def describe(summary: EmbedSummary) -> list[str]:
    """The lines ``modalign embed`` prints."""
    lines = [f"embedded {summary.embedded} rows into {summary.out}"]
    if summary.chunks_resumed:
        lines.append(f"resumed after {summary.chunks_resumed} finished chunk(s)")
    for reason, n in sorted(summary.skipped.items()):
        lines.append(f"skipped rows {reason}: {n}")
    return lines
