"""Training batches streamed from WebDataset shards (:mod:`modalign.data.sources.pack`).

Split: each epoch the shards are permuted by ``(seed, epoch)`` and dealt round-robin to the
``W·K`` reader slots (``K`` DataLoader workers on each of ``W`` ranks; slot ``rank·K + worker``):
every shard is read by exactly one slot, so every sample is seen exactly once per epoch (give at
least ``W·K`` shards, or some slots stay idle). Each slot shuffles its records in a buffer of
``buffer_size`` with a generator seeded by ``(seed, epoch, slot)`` and decodes them after the
shuffle, with the run's transforms, in the worker process (bounded memory: one buffer of raw
records per worker plus the DataLoader's prefetch).

Exact resume: the position is how many records of each part of the epoch were handed out
(:mod:`~modalign.data.sources.shard_parts`) plus the worker to ask next. Workers hand over chunks
of ``chunk`` records (chunk ``k`` of a part = its records ``[k·chunk, (k+1)·chunk)``), which the
DataLoader returns round-robin in a fixed order. On resume every reader passes over its handed-out
records without decoding them (the first chunk is the rest of the interrupted one). With the same
ranks and workers the worker cycle starts where it stopped, so the batches are those of an
uninterrupted run; with other numbers of ranks or workers every remaining record of the
interrupted epoch is still handed out exactly once (in another order), and the next epoch is that
of a run that always had the new layout.

Damage: a record whose media cannot be decoded is skipped with the transform's reason, a member
the metadata names but the shard lacks is ``missing_member``, unreadable JSON ``bad_metadata`` and
an unreadable rest of a shard ``corrupt_shard``; :attr:`ShardBatches.skipped` counts them, each
record once whatever the epoch (its key is kept in :attr:`ShardBatches.failed` and in the
position).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from modalign.data.dataset import ModalitySource, SampleSet, collate, concat_samples, load_samples
from modalign.data.manifest import Manifest
from modalign.data.sources._stacking import stack_rows, unstack_rows
from modalign.data.sources.pack import FILES_KEY, ROW_KEY, iter_tar_samples
from modalign.data.sources.shard_parts import (
    Part,
    fresh_parts,
    mine,
    parts_from_json,
    parts_to_json,
    spread,
)
from modalign.types import Batch

Record = tuple[str, dict[str, bytes] | None]


@dataclass
class ShardItem:
    """One record of a reader's stream: where it is in the epoch's parts and the decoded sample."""

    part: int  # index among the epoch's parts (:mod:`~modalign.data.sources.shard_parts`)
    index: int  # its index within that part
    worker: int
    key: str  # the record's key in its shard (the shard's path for an unreadable rest of a shard)
    samples: SampleSet  # one sample, or none with ``skipped`` set
    chunk_end: bool = True  # the last record of its chunk (the DataLoader moves to the next worker)


@dataclass
class ShardStream(IterableDataset):  # type: ignore[type-arg]
    """This rank's records of one epoch from a position (an IterableDataset for DataLoader workers).

    Reader ``rank·K + worker`` of ``world_size·K`` (``K`` DataLoader workers, 1 without) reads the
    parts that :func:`~modalign.data.sources.shard_parts.mine` gives it, each from its ``done``.
    """

    shards: Sequence[Path]
    sources: Sequence[ModalitySource]
    parts: Sequence[Part]
    done: Sequence[int]  # records of each part already handed out
    epoch: int = 0
    seed: int = 0
    rank: int = 0
    world_size: int = 1
    buffer_size: int = 256
    id_column: str = "id"
    keep_columns: Sequence[str] = ()
    split_column: str = "split"
    split: str | None = None  # records of other splits are passed over (not counted)
    first_worker: int = 0  # the worker the DataLoader asks first (rotation on resume)
    chunk: int = 32  # records per DataLoader item: indices [k·chunk, (k+1)·chunk) of a part

    def stream_shards(self, stream: int, streams: int) -> list[Path]:
        """The shards of stream ``stream`` of ``streams`` this epoch."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(len(self.shards), generator=g).tolist()
        return [self.shards[j] for k, j in enumerate(order) if k % streams == stream]

    def stream(self, part: Part) -> Iterator[Record]:
        """The shuffled records of ``part``'s whole stream (a pure function of seed, epoch, stream)."""
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) * 65_537 + part.stream)
        return shuffled(_records(self.stream_shards(part.stream, part.streams)), self.buffer_size, g)

    def __iter__(self) -> Iterator[list[ShardItem]]:
        """Chunks of decoded records. Chunk boundaries sit at multiples of ``chunk`` within a part
        whatever the resume point, so a resumed DataLoader interleaves the workers' chunks as before."""
        info = get_worker_info()
        workers, loader_id = (info.num_workers, info.id) if info is not None else (1, 0)
        worker = (loader_id + self.first_worker) % workers
        with tempfile.TemporaryDirectory(prefix="modalign-shard-", dir=_scratch_root()) as scratch:
            for i in mine(self.parts, self.rank * workers + worker, self.world_size * workers):
                out: list[ShardItem] = []
                for n, (key, members) in enumerate(self.stream(self.parts[i])):
                    k = self.parts[i].index(n)
                    if k is None or k < self.done[i]:  # not this part's, or handed out before: not decoded
                        continue
                    out.append(
                        ShardItem(i, k, worker, key, self.decode((key, members), Path(scratch)), False)
                    )
                    if (k + 1) % self.chunk == 0:
                        out[-1].chunk_end = True
                        yield _stacked(out)
                        out = []
                if out:
                    out[-1].chunk_end = True
                    yield _stacked(out)

    def decode(self, record: Record, scratch: Path) -> SampleSet:
        """One record -> a one-sample :class:`SampleSet` (or an empty one with the skip reason)."""
        key, members = record
        if members is None:
            return _skipped("corrupt_shard")
        try:
            row = json.loads(members["json"])
            files = row.pop(FILES_KEY)
            index = row.pop(ROW_KEY)
        except (KeyError, ValueError, TypeError, AttributeError):
            return _skipped("bad_metadata")
        if self.split is not None and row.get(self.split_column) != self.split:
            return SampleSet()
        written = []
        try:
            for column, suffix in files.items():
                if suffix not in members:
                    return _skipped("missing_member")
                path = scratch / f"{key}.{suffix}"
                path.write_bytes(members[suffix])
                written.append(path)
                row[column] = str(path)
            row.setdefault(self.id_column, index)
            manifest = Manifest([row], scratch, scratch / f"{key}.json")
            out = load_samples(
                manifest, self.sources, [0], id_column=self.id_column, keep_columns=self.keep_columns
            )
            out.rows = [int(index)] * len(out)  # the manifest row (per-sample augmentation seeds)
            return out
        finally:
            for path in written:
                path.unlink(missing_ok=True)


def _stacked(items: list[ShardItem]) -> list[ShardItem]:
    stack_rows([it.samples for it in items])
    return items


def _unstacked(items: list[ShardItem]) -> list[ShardItem]:
    unstack_rows([it.samples for it in items])
    return items


def _scratch_root() -> str | None:
    """Memory-backed /dev/shm for the short-lived media files when there is one."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _skipped(reason: str) -> SampleSet:
    out = SampleSet()
    out.skipped[reason] += 1
    return out


def _records(shards: Sequence[Path]) -> Iterator[Record]:
    for path in shards:
        yield from iter_tar_samples(path)


def shuffled(records: Iterator[Record], size: int, g: torch.Generator) -> Iterator[Record]:
    """A seeded shuffle buffer: fill ``size`` records, then emit a random one per record read."""
    buffer: list[Record] = []
    for record in records:
        if len(buffer) < size:
            buffer.append(record)
            continue
        j = int(torch.randint(len(buffer), (), generator=g))
        buffer[j], record = record, buffer[j]
        yield record
    while buffer:
        j = int(torch.randint(len(buffer), (), generator=g))
        buffer[j], buffer[-1] = buffer[-1], buffer[j]
        yield buffer.pop()


class ShardBatches:
    """Local batches of ``rows`` samples from shards, epoch after epoch, with an exact position.

    Every rank builds one with the same arguments and its own ``rank``; each epoch's last partial
    batch is dropped. ``state_dict()`` after a batch (every rank's, joined by :func:`merge_states`)
    given to ``load_state_dict()`` of a new instance continues with the next sample, also with other
    numbers of ranks and workers (:mod:`~modalign.data.sources.shard_parts`).
    """

    def __init__(
        self,
        shards: Sequence[Path],
        sources: Sequence[ModalitySource],
        rows: int,
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        workers: int = 0,
        buffer_size: int = 256,
        prefetch: int = 2,
        id_column: str = "id",
        keep_columns: Sequence[str] = (),
        split_column: str = "split",
        split: str | None = None,
        chunk: int = 32,
    ):
        self.shards, self.sources, self.rows = list(shards), list(sources), rows
        self.chunk = chunk  # records per worker-to-trainer transfer
        self.split_column, self.split = split_column, split
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.workers, self.buffer_size, self.prefetch = workers, buffer_size, prefetch
        self.id_column, self.keep_columns = id_column, list(keep_columns)
        self.failed: dict[str, str] = {}  # record key -> why it was skipped (once, whatever the epoch)
        self.next_epoch(epoch=0)

    @property
    def readers(self) -> int:
        """Reader slots over every rank: ranks x DataLoader workers (1 without workers)."""
        return self.world_size * max(self.workers, 1)

    @property
    def skipped(self) -> Counter[str]:
        """Records skipped per reason (each record counted once, whatever the epoch)."""
        return Counter(self.failed.values())

    def state_dict(self) -> dict[str, Any]:
        """This rank's position (JSON); join every rank's with :func:`merge_states`."""
        return {
            "epoch": self.epoch,
            "parts": parts_to_json(self.parts),
            "done": list(self.done),
            "layout": [self.world_size, self.workers],
            "next_worker": {str(self.rank): self.next_worker},
            "failed": dict(self.failed),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue at ``state`` (every rank's position, merged), with this reader's layout."""
        self.epoch = int(state["epoch"])
        self.failed = {str(k): str(v) for k, v in state["failed"].items()}
        parts, done = parts_from_json(state["parts"]), [int(d) for d in state["done"]]
        self.parts, self.done = spread(parts, done, self.readers)
        same = [int(x) for x in state["layout"]] == [self.world_size, self.workers]
        self.next_worker = int(state["next_worker"].get(str(self.rank), 0)) if same else 0

    def items(self) -> Iterator[ShardItem]:
        """This rank's records of the current epoch from the saved position on (which they move)."""
        stream = ShardStream(
            self.shards,
            self.sources,
            self.parts,
            list(self.done),
            epoch=self.epoch,
            seed=self.seed,
            rank=self.rank,
            world_size=self.world_size,
            buffer_size=self.buffer_size,
            id_column=self.id_column,
            keep_columns=self.keep_columns,
            first_worker=self.next_worker,
            split_column=self.split_column,
            split=self.split,
            chunk=self.chunk,
        )
        loader: Iterator[list[ShardItem]] = iter(stream)
        if self.workers > 0:
            loader = iter(
                DataLoader(
                    stream,
                    batch_size=None,
                    num_workers=self.workers,
                    prefetch_factor=self.prefetch,
                    collate_fn=_identity,
                    generator=torch.Generator(),  # its seed draw must not move the training RNG
                )
            )
        for chunk in loader:
            for item in _unstacked(chunk):  # the position moves with every record handed out
                self.done[item.part] = item.index + 1
                self.next_worker = (item.worker + item.chunk_end) % max(self.workers, 1)
                if item.samples.skipped:
                    self.failed.setdefault(item.key, next(iter(item.samples.skipped)))
                yield item

    def __iter__(self) -> Iterator[Batch]:
        """Batches forever (epoch after epoch); the state after each is :meth:`state_dict`."""
        while True:
            for batch, _ in self.epoch_batches():
                yield batch
            self.next_epoch()

    def epoch_batches(self) -> Iterator[tuple[Batch, list[int]]]:
        """The rest of the current epoch: ``(batch, manifest rows of its samples)``; drop-last."""
        pending: list[SampleSet] = []
        for item in self.items():
            if len(item.samples):
                pending.append(item.samples)
            if len(pending) == self.rows:
                rows = concat_samples(pending)
                yield collate(rows, list(range(self.rows)), self.sources), rows.rows
                pending = []

    def next_epoch(self, epoch: int | None = None) -> None:
        """Start epoch ``epoch`` (default: the next one) from its beginning, with this layout."""
        self.epoch = self.epoch + 1 if epoch is None else epoch
        self.parts = fresh_parts(self.readers)
        self.done = [0] * len(self.parts)
        self.next_worker = 0


def merge_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One position from every rank's :meth:`ShardBatches.state_dict` (taken after the same step)."""
    first = states[0]
    if any(s["epoch"] != first["epoch"] or s["parts"] != first["parts"] for s in states):
        raise ValueError("the ranks' shard positions are not of the same epoch and parts")
    return {
        **first,
        "done": [max(d) for d in zip(*(s["done"] for s in states), strict=True)],  # each part: its reader's
        "next_worker": {k: v for s in states for k, v in s["next_worker"].items()},
        "failed": {k: v for s in reversed(states) for k, v in s["failed"].items()},
    }


def _identity(item: Any) -> Any:
    return item
