"""Exact gradient accumulation for contrastive losses (GradCache), independent of any trainer.

A contrastive loss couples every sample of the batch, so summing the gradients of micro-batch
losses is a different objective (fewer negatives). GradCache (Gao et al., *Scaling Deep
Contrastive Learning Batch Size under Memory Limited Setup*, arXiv 2101.06983) gets the gradient of
the full-batch loss with the memory of one micro-batch:

1. embed every micro-batch without a graph, recording the RNG state before each;
2. compute the loss once on the concatenated, detached embeddings and backpropagate it: this gives
   ``g = ∂L/∂r`` and the **only** gradient contribution to loss-side parameters (logit scale and
   bias), exactly once;
3. re-embed each micro-batch with its recorded RNG state (same dropout masks) and backpropagate the
   surrogate ``Σ ⟨r_j, g_j⟩``.

No division by the number of micro-batches is needed. Unlike open_clip's ``--accum-freq``, the
scale's gradient is not multiplied by the number of micro-batches and dropout is replayed.
BatchNorm statistics cannot be exact across micro-batches (and update twice per step in train
mode); use LayerNorm or frozen statistics in towers trained this way.

Mixed precision: the forward passes (first pass, loss, replays) run inside ``forward_context``
(autocast) and every backward outside it, as with a plain step. The cached leaves keep the
embeddings' dtype, so ``g`` is exactly the gradient a one-pass backward would send into the
embeddings. With loss scaling (fp16) the full-batch loss is scaled before its backward; ``g`` then
carries the scale and so does every parameter gradient (loss-side ones directly, encoder ones
through the surrogate), which is what the scaler's ``unscale_`` expects, and an overflow in ``g``
reaches the parameter gradients, where the scaler detects it and skips the step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from modalign.errors import ConfigError
from modalign.training.devices import rng_states, set_rng_states
from modalign.types import EmbeddingBatch, LossOutput

MB = TypeVar("MB")


@dataclass(frozen=True)
class RngState:
    """Torch RNG state of the CPU, of every initialised CUDA device and of MPS."""

    states: dict[str, torch.Tensor]

    @classmethod
    def capture(cls) -> RngState:
        return cls(rng_states())

    def restore(self) -> None:
        set_rng_states(self.states)


def concat_embedding_batches(parts: Sequence[EmbeddingBatch]) -> EmbeddingBatch:
    """Concatenate embedding batches along B (same keys in every part).

    Args:
        parts: micro-batch embeddings, each ``emb[name]`` (b_j, D) and ``present[name]`` (b_j,).

    Returns:
        One :class:`EmbeddingBatch` with (Σ b_j, D) tensors; a ``present`` entry is kept when any
        part has it (parts without it count as all present).

    Raises:
        ConfigError: no parts, or parts with different embedding names.
    """
    if not parts:
        raise ConfigError("concat_embedding_batches needs at least one part")
    keys = list(parts[0].emb)
    for p in parts[1:]:
        if list(p.emb) != keys:
            raise ConfigError(f"micro-batches embed different modalities: {keys} vs {list(p.emb)}")
    emb = {k: torch.cat([p.emb[k] for p in parts]) for k in keys}
    present = {}
    for k in {k for p in parts for k in p.present}:
        masks = []
        for p in parts:
            rows = next(iter(p.emb.values())).shape[0]
            masks.append(
                p.present[k]
                if k in p.present
                else torch.ones(rows, dtype=torch.bool, device=p.emb[keys[0]].device)
            )
        present[k] = torch.cat(masks)
    return EmbeddingBatch(emb, present)


def split_embedding_batch(batch: EmbeddingBatch, sizes: Sequence[int]) -> list[EmbeddingBatch]:
    """Split an embedding batch along B into parts of the given sizes (views, no copy)."""
    emb_parts = {k: torch.split(v, list(sizes)) for k, v in batch.emb.items()}
    pres_parts = {k: torch.split(v, list(sizes)) for k, v in batch.present.items()}
    return [
        EmbeddingBatch({k: v[j] for k, v in emb_parts.items()}, {k: v[j] for k, v in pres_parts.items()})
        for j in range(len(sizes))
    ]


def cached_backward(
    embed_fn: Callable[[MB], EmbeddingBatch],
    micro_batches: Sequence[MB],
    loss_fn: Callable[[EmbeddingBatch], LossOutput],
    *,
    no_sync: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    forward_context: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    scale: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> LossOutput:
    """Accumulate into ``.grad`` the exact gradient of ``loss_fn`` on the concatenated batch.

    Every parameter reached by ``embed_fn`` or ``loss_fn`` receives the gradient it would get
    from one forward/backward over all micro-batches at once, with the same randomness (each
    micro-batch replays the RNG state it was first embedded with). The RNG is left where a plain
    forward of all micro-batches plus the loss would leave it. Call ``optimizer.step()`` after it
    as usual; gradients add to whatever ``.grad`` already holds.

    Args:
        embed_fn: runs the model on one micro-batch -> :class:`EmbeddingBatch` with (b_j, D) rows.
        micro_batches: the A micro-batches (any objects ``embed_fn`` accepts).
        loss_fn: the objective on the full batch (e.g. a ``CombinedObjective``).
        no_sync: optional context manager factory (DDP's ``model.no_sync``) entered for every
            replay except the last, so gradients are all-reduced once.
        forward_context: optional context manager factory (e.g. ``torch.autocast``) entered
            around every call of ``embed_fn`` and ``loss_fn``; backward passes run outside it.
        scale: optional loss scaling (a ``GradScaler``'s ``scale``) applied to the full-batch loss
            before its backward; every accumulated gradient then carries the scale.

    Returns:
        The loss (detached, unscaled) and metrics of the full batch.

    Raises:
        ConfigError: no micro-batches.

    Example:
        A :class:`~modalign.model.MultimodalModel` is itself an ``embed_fn``: calling it on a
        :class:`~modalign.types.Batch` runs ``forward`` and returns an :class:`EmbeddingBatch`.

        >>> out = cached_backward(model, batch.split(4), objective)
        >>> optimizer.step(); objective.clamp_(); optimizer.zero_grad()
    """
    if len(micro_batches) == 0:
        raise ConfigError("cached_backward needs at least one micro-batch")
    forward = forward_context if forward_context is not None else contextlib.nullcontext
    states: list[RngState] = []
    parts: list[EmbeddingBatch] = []
    with torch.no_grad():
        for mb in micro_batches:
            states.append(RngState.capture())
            with forward():
                parts.append(embed_fn(mb))
    sizes = [next(iter(p.emb.values())).shape[0] for p in parts]
    full = concat_embedding_batches(parts)
    leaves = {k: v.detach().requires_grad_(True) for k, v in full.emb.items()}
    with forward():
        out = loss_fn(EmbeddingBatch(leaves, full.present))
    (scale(out.loss) if scale is not None else out.loss).backward()
    after = RngState.capture()  # where a plain forward + loss would leave the RNG
    grads = {k: (v.grad.split(sizes) if v.grad is not None else None) for k, v in leaves.items()}
    last = len(micro_batches) - 1
    for j, (mb, state) in enumerate(zip(micro_batches, states, strict=True)):
        state.restore()
        context = no_sync() if (no_sync is not None and j < last) else contextlib.nullcontext()
        with context:
            with forward():
                replay = embed_fn(mb)
            surrogate = _surrogate(replay, {k: g[j] for k, g in grads.items() if g is not None})
            if surrogate is not None:
                surrogate.backward()
    after.restore()
    return LossOutput(out.loss.detach(), out.metrics)


def _surrogate(replay: EmbeddingBatch, grads: dict[str, torch.Tensor]) -> torch.Tensor | None:
    # Σ ⟨r_j, g_j⟩: its parameter gradient is exactly g_j pulled back through the encoder.
    total: torch.Tensor | None = None
    for k, g in grads.items():
        r = replay.emb[k]
        if not r.requires_grad:
            continue
        term = (r * g.to(r.dtype)).sum()
        total = term if total is None else total + term
    return total
