"""Multi-process training on ``torch.distributed``: one correct mode, no flags.

Launch with ``torchrun --nproc-per-node N -m modalign train CFG`` (or ``modalign train --nproc
N``). ``trainer.batch_size`` is the **global** batch: rank ``r`` of ``W`` takes the rows
``[r·B/W, (r+1)·B/W)`` of every global batch (``B`` must be divisible by ``W``), so the ranks'
slices, concatenated in rank order, are exactly the batch one process would take.

Exact gradients (METHODS.md §1.8): every objective sees the embeddings of the **whole** global
batch, gathered with an autograd-aware all-gather whose backward **sums** the gradients that every
rank sends to each slice. All ranks compute the same global loss ``L``; rank ``r``'s encoder
gradient is then ``W·∂L/∂z_r·∂z_r/∂θ`` and the all-reduce **average** of the gradients gives
``Σ_r ∂L/∂z_r·∂z_r/∂θ = ∂L/∂θ``. Loss-side parameters (logit scale, bias) get ``∂L/∂s`` on every
rank, unchanged by the average. A per-rank prediction loss (mean over the rank's rows) averages to
the global mean because the slices have equal size. Any objective, tiled or not, and GradCache
compose: they only ever see a full batch.

Gradients are averaged by one all-reduce over a flat buffer after the backward (what DDP does,
without its bucketed overlap of communication and backward), so the model is never wrapped and
checkpoints are the same files whatever the world size.
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from modalign.errors import ConfigError
from modalign.training.devices import rng_states, set_rng_states
from modalign.types import Batch, EmbeddingBatch, LossOutput


@dataclass(frozen=True)
class World:
    """This process's ``rank`` among ``size`` processes (``World()`` = one process)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes checkpoints, logs and reports."""
        return self.rank == 0

    @classmethod
    def current(cls) -> World:
        """The initialised default process group, else one process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def local_rows(self, global_batch: int) -> int:
        """Rows per rank of a global batch; a ConfigError when it does not split evenly."""
        if global_batch % self.size:
            raise ConfigError(
                f"trainer.batch_size={global_batch} (the global batch) is not divisible by the "
                f"{self.size} processes; choose a multiple of {self.size}"
            )
        return global_batch // self.size

    def my_rows(self, rows: Sequence[int]) -> list[int]:
        """This rank's contiguous slice of a global batch's rows."""
        n = self.local_rows(len(rows))
        return list(rows[self.rank * n : (self.rank + 1) * n])

    def average_gradients(self, params: Sequence[torch.Tensor]) -> None:
        """Replace every ``.grad`` by its mean over the ranks (one all-reduce of a flat buffer).

        A parameter without a gradient on this rank counts as a zero gradient, so every rank takes
        part in the same collective whatever its graph reached.
        """
        if self.size == 1:
            return
        params = list(params)
        if not params:
            return
        flat = torch.cat([_grad_or_zeros(p).reshape(-1) for p in params])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset : offset + n].view_as(p).clone()
            offset += n

    def broadcast_state(self, modules: Sequence[nn.Module]) -> None:
        """Copy rank 0's parameters and buffers to every rank (after init or a resume)."""
        if self.size == 1:
            return
        with torch.no_grad():
            for module in modules:
                for t in [*module.parameters(), *module.buffers()]:
                    dist.broadcast(t.data, src=0)

    def all_mean(self, value: float) -> float:
        """Mean of a float over the ranks (for logging a per-rank quantity)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t) / self.size

    def union(self, items: dict[Any, Any]) -> dict[Any, Any]:
        """Every rank's entries of ``items`` in one dict, on every rank (a collective)."""
        if self.size == 1:
            return dict(items)
        parts: list[Any] = [None] * self.size
        dist.all_gather_object(parts, items)
        return {k: v for part in parts for k, v in part.items()}

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def _grad_or_zeros(p: torch.Tensor) -> torch.Tensor:
    return p.grad if p.grad is not None else torch.zeros_like(p)


@contextlib.contextmanager
def joined_from_env(device: str = "auto") -> Iterator[World]:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    Backend: NCCL when the run is on CUDA (each process on ``cuda:LOCAL_RANK``), else gloo. Without
    torchrun's variables (or with one process) nothing is initialised and ``World()`` is yielded.
    A group joined here is destroyed on leaving: a process that exits with a live gloo group can
    abort in interpreter shutdown (SIGABRT, "terminate called without an active exception") after
    its work is done, which torchrun reports as a failed run. A group the caller made is left alone.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1 or not dist.is_available():
        yield World()
        return
    created = not dist.is_initialized()
    if created:
        cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    try:
        yield World.current()
    finally:
        if created and dist.is_initialized():
            dist.destroy_process_group()


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0; backward sums every rank's gradient and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        size, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.rows = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows : (ctx.rank + 1) * ctx.rows]


def gather_rows(x: torch.Tensor, world: World) -> torch.Tensor:
    """Every rank's rows of ``x`` in rank order (with gradient when ``x`` requires one).

    Every rank must hold the same number of rows. Boolean masks travel as uint8 (gloo has no bool).
    """
    if world.size == 1:
        return x
    if x.dtype == torch.bool:
        return gather_rows(x.to(torch.uint8), world).bool()
    if x.requires_grad:
        out: torch.Tensor = _GatherRows.apply(x)
        return out
    parts = [torch.empty_like(x) for _ in range(world.size)]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def gather_embeddings(batch: EmbeddingBatch, world: World) -> EmbeddingBatch:
    """The global batch: embeddings, presence masks and features of every rank, in rank order."""
    if world.size == 1:
        return batch
    emb = {k: gather_rows(v, world) for k, v in sorted(batch.emb.items())}
    present = {k: gather_rows(v, world) for k, v in sorted(batch.present.items())}
    features = None
    if batch.features is not None:
        features = {k: gather_rows(v, world) for k, v in sorted(batch.features.items())}
    return EmbeddingBatch(emb, present, features)


class GatheredObjective:
    """``objective`` applied to the global batch gathered from every rank (see module docstring).

    A plain callable, not a module: the objective's parameters, state dict and checkpoints stay
    those of ``objective`` whatever the world size.
    """

    def __init__(self, objective: nn.Module, world: World):
        self.objective, self.world = objective, world

    def __call__(self, batch: EmbeddingBatch) -> LossOutput:
        out: LossOutput = self.objective(gather_embeddings(batch, self.world))
        return out


class RankStreamModel:
    """Calls ``model`` under a random stream of the batch's own rows (dropout differs by rank).

    Every rank's global RNG is seeded alike so that the objectives' draws on the global batch
    (mixup) agree; a forward on that shared stream would give every rank the same dropout masks.
    Here the forward runs on a forked stream seeded by the shared state and the rows' ids: different
    rows (ranks, micro-batches) get different masks, a GradCache replay (same state, same rows)
    gets the same ones, and the shared stream is left untouched.
    """

    def __init__(self, model: Callable[[Batch], EmbeddingBatch], world: World):
        self.model, self.world = model, world

    def __call__(self, batch: Batch) -> EmbeddingBatch:
        with rows_stream(batch.ids, self.world):
            return self.model(batch)


@contextlib.contextmanager
def rows_stream(ids: Sequence[str], world: World) -> Iterator[None]:
    """With several ranks: run the block on a fork of the shared RNG seeded by its state and ``ids``."""
    if world.size == 1:
        yield
        return
    state = zlib.crc32(torch.get_rng_state().numpy().tobytes())
    rows = zlib.crc32("\0".join(ids).encode())
    saved = rng_states()
    try:
        torch.manual_seed((state << 32) | rows)  # CPU and every device
        yield
    finally:
        set_rng_states(saved)
