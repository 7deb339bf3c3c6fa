"""WebDataset shards as the trainer's batch source (``data.source: shards``).

Each rank streams its own shards (:class:`~modalign.data.sources.ShardBatches`); the ranks end
every epoch together (one all-reduce per step: when any rank has no full batch left, the epoch
ends everywhere, drop-last), and the checkpoint holds every rank's reader position so a resumed run
continues at the exact sample.

Resuming with other numbers of processes or workers: the global batch is the same
(``trainer.batch_size``), every sample that the interrupted epoch had not yet handed out is
trained on once in that epoch and none twice, in another order than an uninterrupted run (see
:mod:`~modalign.data.sources.shard_parts`); the following epochs are those of a run that always had
the new layout. What the epoch's drop-last leaves out is what remains when the first rank runs out
of full batches, as in any run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist

from modalign.data.augment import sample_seed
from modalign.data.sources.shard_parts import fresh_parts, parts_to_json
from modalign.data.sources.shards import ShardBatches, merge_states
from modalign.training.checkpoint import TrainState, json_tensor, tensor_json
from modalign.training.distributed import World
from modalign.types import Batch

STATE_KEY = "source/shards"


class ShardSource:
    """The training split in shards: ``len`` is its size (from ``index.json``), batches stream."""

    def __init__(self, batches: ShardBatches, samples: int, world: World):
        self.reader, self.samples, self.world = batches, samples, world

    def __len__(self) -> int:
        return self.samples

    @property
    def skipped(self) -> Counter[str]:
        return self.reader.skipped

    @property
    def failed(self) -> dict[str, str]:
        """This rank's skipped records (key -> reason); the trainer joins every rank's."""
        return self.reader.failed

    def batches(self, state: TrainState, seed: int) -> Iterator[tuple[TrainState, Batch, list[int]]]:
        """Local batches from the reader's position, with the position after each and the seeds."""
        k = state.batch_in_epoch
        while True:
            epoch = self.reader.epoch
            for batch, rows in self.reader.epoch_batches():
                if not self._all_ranks(True):
                    break
                k += 1
                yield TrainState(0, epoch, k), batch, [sample_seed(seed, epoch, r) for r in rows]
            else:
                self._all_ranks(False)
            self.reader.next_epoch()
            k = 0

    def _all_ranks(self, have_batch: bool) -> bool:
        """True when every rank has a batch for this step."""
        if self.world.size == 1:
            return have_batch
        flag = torch.tensor([int(have_batch)])
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every rank's reader position, merged, as checkpoint tensors (a collective: call on every rank)."""
        states: list[Any] = [self.reader.state_dict()]
        if self.world.size > 1:
            states = [None] * self.world.size
            dist.all_gather_object(states, self.reader.state_dict())
        return {STATE_KEY: json_tensor(merge_states(states))}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        if STATE_KEY in tensors:
            saved = tensor_json(tensors[STATE_KEY])
            self.reader.load_state_dict(saved if "parts" in saved else _first_format(saved))


def _first_format(saved: dict[str, Any]) -> dict[str, Any]:
    """A position of the first checkpoint format (one per rank, records produced per slot) as parts.

    Its skipped records were only counted, not named: they are kept under made-up keys.
    """
    ranks, workers = saved["ranks"], int(saved["workers"])
    readers = len(ranks) * max(workers, 1)
    done = [0] * readers
    for state in ranks:
        for slot, n in state["produced"].items():
            done[int(slot)] = int(n)
    failed = {
        f"earlier/{r}/{k}/{n}": n
        for r, state in enumerate(ranks)
        for n, count in state["skipped"].items()
        for k in range(int(count))
    }
    return {
        "epoch": ranks[0]["epoch"],
        "parts": parts_to_json(fresh_parts(readers)),
        "done": done,
        "layout": [len(ranks), workers],
        "next_worker": {str(r): state["next_worker"] for r, state in enumerate(ranks)},
        "failed": failed,
    }
