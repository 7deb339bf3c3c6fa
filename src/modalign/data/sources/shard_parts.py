"""Which records of an epoch each shard reader reads, so that a position survives a new layout.

An epoch starts with one **stream** per reader slot (``S = W·K`` slots: ``K`` DataLoader workers
on each of ``W`` ranks): stream ``s`` is the shards dealt to slot ``s`` by the epoch's seeded shard
permutation, shuffled in a buffer seeded by ``(seed, epoch, s)``; it is a pure function of those
numbers. A **part** is an arithmetic progression of positions in one stream (``start``,
``start + step``, ...); an epoch begins with ``S`` parts, stream ``s`` whole for slot ``s``.

A saved position is the epoch's parts and how many records of each were handed out (``done``).
Resumed with any layout of ``R`` readers, reader ``r`` reads the parts ``i ≡ r (mod R)`` one after
the other, each from its ``done``; when there are fewer parts than readers, the rest of every part
is first dealt into ``⌈R/P⌉`` interleaved parts. Every record of the stream is in exactly one part
and is read past (not decoded) until its part reaches it, so each record of the interrupted epoch
is handed out exactly once over the runs, whatever the layouts (a part dealt into ``m`` has its
stream read ``m`` times over, for the rest of that epoch only). The same layout gives the same
parts, hence the same order as an uninterrupted run; the next epoch starts fresh with the new
layout (identical to a run that always had it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """Positions ``start, start + step, ...`` of stream ``stream`` of the epoch's ``streams``."""

    stream: int
    streams: int
    start: int = 0
    step: int = 1

    def index(self, n: int) -> int | None:
        """The index in this part of the stream's record ``n`` (None when it is not in the part)."""
        if n < self.start or (n - self.start) % self.step:
            return None
        return (n - self.start) // self.step

    def rest(self, done: int, ways: int) -> list[Part]:
        """The positions after the first ``done`` of this part, dealt round-robin into ``ways`` parts."""
        first = self.start + done * self.step
        return [Part(self.stream, self.streams, first + j * self.step, self.step * ways) for j in range(ways)]


def fresh_parts(readers: int) -> list[Part]:
    """An epoch's parts for ``readers`` slots: stream ``s`` whole for slot ``s``."""
    return [Part(s, readers) for s in range(readers)]


def spread(parts: Sequence[Part], done: Sequence[int], readers: int) -> tuple[list[Part], list[int]]:
    """At least ``readers`` parts covering what ``parts`` have left (unchanged when there are enough)."""
    if len(parts) >= readers:
        return list(parts), list(done)
    ways = math.ceil(readers / len(parts))
    out = [q for p, d in zip(parts, done, strict=True) for q in p.rest(d, ways)]
    return out, [0] * len(out)


def mine(parts: Sequence[Part], reader: int, readers: int) -> list[int]:
    """The indices of the parts that reader ``reader`` of ``readers`` reads, in order."""
    return [i for i in range(len(parts)) if i % readers == reader]


def parts_to_json(parts: Sequence[Part]) -> list[list[int]]:
    return [[p.stream, p.streams, p.start, p.step] for p in parts]


def parts_from_json(rows: Sequence[Sequence[int]]) -> list[Part]:
    return [Part(*map(int, row)) for row in rows]
