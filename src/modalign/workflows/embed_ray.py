"""``modalign embed --engine ray``: the chunks of an embedding run spread over a Ray cluster.

Each chunk is one Ray task. A worker process loads the model and the manifest once (a cached
global, reused by every task it runs) and returns the chunk's vectors, item lines and skip counts;
the driver writes them in chunk order with the local path's writer, so the directory is the
same, byte for byte, as ``--engine local`` (same chunks, same batches, the driver's torch thread
count in every worker). A worker that dies (killed, out of memory) has its task retried by Ray;
a killed driver resumes from the finished chunks like the local path.

Every node must see the model directory, the manifest and the media at the paths the driver uses
(a shared filesystem), with the same torch build: different CPUs or torch versions may round
differently.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalign.errors import ConfigError, ModalignError

ChunkResult = tuple[np.ndarray, list[dict[str, Any]], dict[str, int]]

# per worker process: (manifest, its crc32, model files) -> (model, manifest); only the latest is kept
_LOADED: dict[tuple[Any, ...], Any] = {}


def embed_chunks_on_ray(
    plan: dict[str, Any],
    todo: Sequence[int],
    *,
    address: str | None = None,
    worker_hook: Callable[[int], None] | None = None,
    max_retries: int = 3,
) -> Iterator[tuple[int, ChunkResult]]:
    """Yield ``(c, chunk result)`` for every chunk in ``todo``, in order, computed by Ray tasks.

    At most two tasks per cluster slot are in flight (or finished and waiting for an earlier
    chunk), so the object store holds a bounded number of chunks.

    Raises:
        ConfigError: Ray is not installed or the cluster at ``address`` cannot be reached.
    """
    ray, started = _connect(address)
    refs: dict[int, Any] = {}
    try:
        threads = torch.get_num_threads()
        widest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n["Alive"]), default=0)
        if threads > widest:
            raise ConfigError(
                f"each Ray task reserves the driver's {threads} torch threads as CPUs, but the largest "
                f"node has {widest:g}: run with OMP_NUM_THREADS={max(1, int(widest))} (the local command "
                "gives the same bytes with the same thread count)"
            )
        task = ray.remote(_embed_in_worker).options(
            num_cpus=threads, max_retries=max_retries, retry_exceptions=False
        )
        slots = max(1, int(ray.cluster_resources().get("CPU", threads) // threads))
        queue = list(todo)
        for c in todo:
            while queue and len(refs) < 2 * slots:
                nxt = queue.pop(0)
                refs[nxt] = task.remote(plan, nxt, threads, worker_hook)
            # in chunk order: the chunks before a failing one are written first
            yield c, _get(ray, refs.pop(c))
    finally:
        for ref in refs.values():  # a failed or interrupted run leaves no work behind
            ray.cancel(ref)
        if started:
            ray.shutdown()


def _connect(address: str | None) -> tuple[Any, bool]:
    """The ``ray`` module, connected; True when this call started the connection (to close it)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'modalign[ray]'") from None
    if ray.is_initialized():
        return ray, False
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ConfigError(f"cannot connect to {where}: {e}") from None
    return ray, True


def _get(ray: Any, ref: Any) -> ChunkResult:
    """A task's result; modalign's own errors (bad data, bad config) surface as themselves."""
    try:
        return ray.get(ref)  # type: ignore[no-any-return]
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, ModalignError):
            raise e.cause from None
        raise


def _embed_in_worker(
    plan: dict[str, Any], c: int, threads: int, worker_hook: Callable[[int], None] | None
) -> ChunkResult:
    """Runs in a Ray worker: chunk ``c`` of ``plan``, with the model loaded once per process."""
    from modalign.workflows.embed import embed_chunk

    torch.set_num_threads(threads)  # the driver's count: the same float32 sums as the local path
    if worker_hook is not None:
        worker_hook(c)
    model, manifest = _load(plan)
    return embed_chunk(
        model, manifest, plan["modality"], c, plan["chunk_rows"], plan["batch_size"], plan["id_column"]
    )


def _load(plan: dict[str, Any]) -> tuple[Any, Any]:
    from modalign.data.manifest import read_manifest
    from modalign.model import load

    # the model's files by name, size and mtime: a model saved again in place is loaded again
    files = sorted(p for p in Path(plan["model_dir"]).rglob("*") if p.is_file())
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    key = (plan["manifest"], plan["manifest_crc32"], stamp)
    if key not in _LOADED:
        path = Path(plan["manifest"])
        if zlib.crc32(path.read_bytes()) != plan["manifest_crc32"]:
            raise ConfigError(f"{path} differs on this Ray node from the driver's copy (crc32 mismatch)")
        model = load(plan["model_dir"])
        model.eval()
        _LOADED.clear()
        _LOADED[key] = (model, read_manifest(path))
    return _LOADED[key]  # type: ignore[no-any-return]
