"""MicroBatcher: concurrent queries share one encode call (and one index search) through the model.

The first query to arrive opens a batch; the batcher waits up to ``wait_s`` for more (or until
``max_batch``), groups them by what they ask (modality, and for searches k and filter) and makes
one ``encode`` call per group on its own model thread, followed for searches by one ``search``
call with all the group's query rows. While those calls run, new queries queue up, so under load
batches grow by themselves and the wait only matters when the service is nearly idle.
``max_batch=1`` turns batching off (one encode call per query, the same thread): the baseline of
``benchmarks/serve_load.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import numpy as np

from modalign.errors import ConfigError, ModalignError

# encode(inputs, modality) -> (N, D) float32, e.g. MultimodalModel.encode
EncodeFn = Callable[[Sequence[Any], str], np.ndarray]
# search(queries (N, D), k, filter) -> N lists of hits, e.g. modalign.search.Index.search
SearchFn = Callable[[np.ndarray, int, "dict[str, Any] | None"], list[list[Any]]]
# what a query asks: ("embed", modality) or ("search", modality, k, filter as canonical JSON)
Key = tuple[Any, ...]
Pending = tuple[Key, Any, "asyncio.Future[Any]"]


class MicroBatcher:
    """Embed single queries, batching those that arrive together into one encode call.

    Args:
        encode: ``encode(inputs, modality) -> (N, D)``, called on one dedicated thread only.
        search: ``search(queries, k, filter) -> hits per query`` for :meth:`search` (same thread).
        max_batch: the most queries per encode call (1 = no batching).
        wait_s: how long an open batch waits for more queries.
    """

    def __init__(
        self, encode: EncodeFn, search: SearchFn | None = None, max_batch: int = 64, wait_s: float = 0.002
    ):
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        self._encode = encode
        self._search = search
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modalign-encode")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Pending] | None = None
        self._worker: asyncio.Task[None] | None = None
        self.calls = 0  # encode calls made (for tests and the benchmark)

    async def embed(self, payload: Any, modality: str) -> np.ndarray:
        """The (D,) embedding of one query (raises what ``encode`` raises for it)."""
        return cast(np.ndarray, await self._submit(("embed", modality), payload))

    async def search(self, payload: Any, modality: str, k: int, filter: dict[str, Any] | None) -> list[Any]:
        """The hits of one query: its embedding searched with ``k`` and ``filter``."""
        if self._search is None:
            raise ConfigError("this MicroBatcher was made without a search function")
        key = ("search", modality, k, None if filter is None else json.dumps(filter, sort_keys=True))
        return cast("list[Any]", await self._submit(key, payload))

    async def _submit(self, key: Key, payload: Any) -> Any:
        queue = self._ensure_worker()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await queue.put((key, payload, future))
        return await future

    def close(self) -> None:
        """Stop the worker and the model thread (pending queries are cancelled)."""
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _ensure_worker(self) -> asyncio.Queue[Pending]:
        loop = asyncio.get_running_loop()
        # a new event loop (e.g. a test client per request) gets its own queue and worker
        if self._queue is None or self._loop is not loop or self._worker is None or self._worker.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._run(self._queue))
        return self._queue

    async def _run(self, queue: asyncio.Queue[Pending]) -> None:
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
            groups: dict[Key, list[tuple[Any, asyncio.Future[Any]]]] = {}
            for key, payload, future in batch:
                if not future.done():  # a cancelled request (timeout, disconnect) is skipped
                    groups.setdefault(key, []).append((payload, future))
            for key, items in groups.items():
                await self._run_group(key, items)

    def _answer(self, key: Key, payloads: list[Any]) -> list[Any]:
        """On the model thread: one encode call, then one search call for searches."""
        emb = self._encode(payloads, key[1])  # (N, D)
        if key[0] == "embed":
            return list(emb)
        assert self._search is not None
        return self._search(emb, key[2], None if key[3] is None else json.loads(key[3]))

    async def _run_group(self, key: Key, items: list[tuple[Any, asyncio.Future[Any]]]) -> None:
        loop = asyncio.get_running_loop()
        payloads = [p for p, _ in items]
        try:
            self.calls += 1
            answers = await loop.run_in_executor(self._pool, self._answer, key, payloads)
        except ModalignError as e:
            if len(items) == 1:
                _resolve(items[0][1], error=e)
                return
            # one bad query must not fail the others: answer each alone to find it
            for payload, future in items:
                await self._run_group(key, [(payload, future)])
            return
        except Exception as e:  # a bug: every query of the batch learns of it
            for _, future in items:
                _resolve(future, error=e)
            return
        for answer, (_, future) in zip(answers, items):
            _resolve(future, value=answer)


def _resolve(future: asyncio.Future[Any], value: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
