"""MicroBatcher: concurrent queries share one encode call through the model.

The first query to arrive opens a batch; the batcher waits up to ``wait_s`` for more (or until
``max_batch``), groups them by modality and makes one ``encode`` call per group on its own model
thread. While that call runs, new queries queue up, so under load batches grow by themselves and the
wait only matters when the service is nearly idle. ``max_batch=1`` turns batching off (one encode
call per query, the same thread): the baseline of ``benchmarks/serve_load.py``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from modalign.errors import ConfigError, ModalignError

# encode(inputs, modality) -> (N, D) float32, e.g. MultimodalModel.encode
EncodeFn = Callable[[Sequence[Any], str], np.ndarray]


class MicroBatcher:
    """Embed single queries, batching those that arrive together into one encode call.

    Args:
        encode: ``encode(inputs, modality) -> (N, D)``, called on one dedicated thread only.
        max_batch: the most queries per encode call (1 = no batching).
        wait_s: how long an open batch waits for more queries.
    """

    def __init__(self, encode: EncodeFn, max_batch: int = 64, wait_s: float = 0.002):
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        self._encode = encode
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modalign-encode")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, Any, asyncio.Future[np.ndarray]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.calls = 0  # encode calls made (for tests and the benchmark)

    async def embed(self, payload: Any, modality: str) -> np.ndarray:
        """The (D,) embedding of one query (raises what ``encode`` raises for it)."""
        queue = self._ensure_worker()
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        await queue.put((modality, payload, future))
        return await future

    def close(self) -> None:
        """Stop the worker and the model thread (pending queries are cancelled)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self) -> asyncio.Queue[tuple[str, Any, asyncio.Future[np.ndarray]]]:
        loop = asyncio.get_running_loop()
        # a new event loop (e.g. a test client per request) gets its own queue and worker
        if self._queue is None or self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue))
        return self._queue

    async def _run(self, queue: asyncio.Queue[tuple[str, Any, asyncio.Future[np.ndarray]]]) -> None:
        while True:
            batch = [await queue.get()]
            deadline = time.monotonic() + self.wait_s
            while len(batch) < self.max_batch:
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), left))
                except asyncio.TimeoutError:
                    break
            groups: dict[str, list[tuple[Any, asyncio.Future[np.ndarray]]]] = {}
            for modality, payload, future in batch:
                if not future.done():  # a cancelled request (timeout, disconnect) is skipped
                    groups.setdefault(modality, []).append((payload, future))
            for modality, items in groups.items():
                await self._encode_group(modality, items)

    async def _encode_group(self, modality: str, items: list[tuple[Any, asyncio.Future[np.ndarray]]]) -> None:
        loop = asyncio.get_running_loop()
        payloads = [p for p, _ in items]
        try:
            self.calls += 1
            emb = await loop.run_in_executor(self._pool, self._encode, payloads, modality)
        except ModalignError as e:
            if len(items) == 1:
                _resolve(items[0][1], error=e)
                return
            # one bad query must not fail the others: encode each alone to find it
            for payload, future in items:
                await self._encode_group(modality, [(payload, future)])
            return
        except Exception as e:  # a bug: every query of the batch learns of it
            for _, future in items:
                _resolve(future, error=e)
            return
        for row, (_, future) in enumerate(items):
            _resolve(future, value=emb[row])


def _resolve(
    future: asyncio.Future[np.ndarray], value: Any = None, error: BaseException | None = None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
