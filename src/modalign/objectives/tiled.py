"""Exact InfoNCE and SigLIP for huge batches: tile by tile, tiles recomputed in backward.

The InfoNCE loss of row i is ``LSE_j Z_ij − Z_ii`` (and the same over columns), so the forward pass
only has to keep **one log-sum-exp per row and one per column**; the backward pass recomputes each
``(chunk, chunk)`` tile of ``Z = s·a bᵀ`` and forms its gradient block from the saved LSEs
(Inf-CL, Wang et al., *Breaking the Memory Barrier: Near Infinite Batch Size Scaling for Contrastive
Loss*, arXiv 2410.17243, Sec. 3). Peak memory is the inputs, their gradients, ``2B`` LSE values, a
few tiles and at most ``cache_mb`` MiB of forward tiles kept to skip their recomputation:
``O(B·D + chunk² + cache)`` instead of ``O(B²)``. Values equal the untiled loss up to
floating-point summation order.

Cost: forward ``2B²D`` FLOPs (one matmul per tile), backward ``6B²D`` (recompute + two gradient
matmuls; ``4B²D`` for kept tiles): ``8B²D`` against ``12B²D`` for open_clip's two-matrix
``ClipLoss``. Large tiles (e.g. 4096) make fewer, larger operations, which matters on a CPU shared
with other processes; memory then grows by a few ``chunk²`` floats.

Accumulators (LSEs, scale gradient) are kept in float32, or float64 for float64 inputs, whatever the
feature dtype.

When to tile (``chunk_size="auto"``, the default of the ``clip`` and ``siglip`` objectives):
:func:`resolve_chunk` tiles with side ``AUTO_CHUNK`` (4096) as soon as the loss sees
``AUTO_MIN_BATCH`` (1024) rows, and never below. The rule comes from a measurement on a 2-core Xeon
CPU (4 MiB L2 per core), fp32, forward + backward, D from 128 to 2048: from B = 1024 on (one
``(B, B)`` fp32 matrix is then 4 MiB, no longer fitting in L2 next to the untiled loss's other
``(B, B)`` temporaries, which is likely why) tiled InfoNCE is faster at every D measured, and tiled
SigLIP at every D up to 1024 (at D = 2048 it is 1.0–1.1x the untiled time, for less memory); at
B = 256 a fixed per-call cost makes both tiled losses slower at every D; in between it depends on
D. The figures and the command are in the docstring of :func:`resolve_chunk`. The rule lives in
this file, past 400 lines, because it is a measurement of these two functions and moves with them.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.autograd.function import once_differentiable

from modalign.errors import ConfigError

CACHE_MB = 256.0  # default MiB of forward tiles kept for backward (see tiled_info_nce)
AUTO_MIN_BATCH = 1024  # "auto" tiles from this many rows on (see resolve_chunk)
AUTO_CHUNK = 4096  # tile side "auto" uses

ChunkSize = int | Literal["auto"] | None
"""``None`` (never tile), an int >= 1 (always tile with that side) or ``"auto"``."""


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_chunk(chunk_size: int) -> int:
    if int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    return int(chunk_size)


def check_chunk_size(chunk_size: object, where: str = "chunk_size") -> ChunkSize:
    """Validate a ``chunk_size`` setting: ``None``, an int >= 1 or ``"auto"``.

    Args:
        chunk_size: the value as given (from YAML: ``null``, an integer or ``auto``).
        where: what to name in the error, e.g. ``"objective 'clip': chunk_size"``.

    Returns:
        ``None``, the int, or ``"auto"``.

    Raises:
        ConfigError: any other value (0, negative, a bool, another string), naming the fix.
    """
    if chunk_size is None or chunk_size == "auto":
        return chunk_size  # type: ignore[return-value]
    if isinstance(chunk_size, int) and not isinstance(chunk_size, bool) and chunk_size >= 1:
        return chunk_size
    raise ConfigError(
        f"{where} must be an integer >= 1 (fixed tile side), 'auto' (tile large batches) or null "
        f"(never tile); got {chunk_size!r}"
    )


def resolve_chunk(chunk_size: ChunkSize, n: int) -> int | None:
    """The tile side a loss on ``n`` rows uses, or ``None`` for the untiled ``(B, B)`` path.

    ``"auto"`` tiles with side ``AUTO_CHUNK`` when ``n >= AUTO_MIN_BATCH``; both module constants
    are read at call time. ``None`` and ints are returned as they are.

    The measurement behind the rule (figures of one run, not pinned by a test; rerun with
    ``python benchmarks/loss_memory.py --sweep-only [--loss siglip]``): fp32 unit rows, forward +
    backward, 1 thread, CPU time of the fastest call of the tiled loss (side 4096, default cache)
    over the untiled one's, on a 2-core Xeon shared with other jobs. Below 1 tiling is faster.

    ===============  =======  =======  =======  ========  ========
    loss, D          B = 256  B = 512  B = 768  B = 1024  B = 2048
    ===============  =======  =======  =======  ========  ========
    InfoNCE, 128     1.07     0.81     0.68     0.34      0.31
    InfoNCE, 512     1.22     0.99     0.91     0.59      0.52
    InfoNCE, 1024    1.37     1.11     1.02     0.76      0.66
    InfoNCE, 2048    1.50     1.24     1.13     0.93      0.79
    SigLIP, 128      1.04     0.82     0.73     0.66      0.51
    SigLIP, 512      1.19     1.01     0.91     0.90      0.66
    SigLIP, 1024     1.29     1.12     1.02     0.98      0.91
    SigLIP, 2048     1.39     1.16     1.10     1.11      1.00
    ===============  =======  =======  =======  ========  ========

    At B = 8192, D = 512, 2 threads, ``auto`` (then tiled) took about 0.6x open_clip's
    ``ClipLoss`` time and half its peak memory (``python benchmarks/loss_memory.py``).

    Args:
        chunk_size: ``None``, an int >= 1 or ``"auto"`` (see :func:`check_chunk_size`).
        n: rows the loss sees (present rows).

    Returns:
        Tile side, or ``None`` to compute the full matrix.

    Raises:
        ConfigError: an invalid ``chunk_size``.
    """
    chunk_size = check_chunk_size(chunk_size)
    if chunk_size == "auto":
        return AUTO_CHUNK if n >= AUTO_MIN_BATCH else None
    return chunk_size


def _spans(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(i, min(i + chunk, n)) for i in range(0, n, chunk)]


def _tile_lse(
    tile: torch.Tensor, row_shift: torch.Tensor, col_shift: torch.Tensor, buf: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column ``LSE(tile − shift)`` of a tile, in a few in-place passes.

    ``torch.logsumexp`` allocates and makes several passes per call; on a tile this is most of
    the forward's non-matmul time. Each direction is shifted by its own maxima (no overflow), and
    the shift is applied as ``(max − shift) + log Σ exp(tile − max)`` so that when the positive is
    the maximum, ``max − shift`` is exactly 0 and the small ``log(1 + ε)`` keeps its digits.

    Args:
        tile: (R, C), left intact.
        row_shift: (R,) subtracted from every row (``Z_ii``).
        col_shift: (C,) subtracted from every column.
        buf: scratch of at least (R, C).

    Returns:
        ``(rows (R,), cols (C,))``.
    """
    r, c = tile.shape
    work = buf[:r, :c]
    row_max = tile.amax(1)
    torch.sub(tile, row_max[:, None], out=work)
    rows = work.exp_().sum(1).log_().add_(row_max - row_shift)
    col_max = tile.amax(0)
    torch.sub(tile, col_max[None, :], out=work)
    cols = work.exp_().sum(0).log_().add_(col_max - col_shift)
    return rows, cols


class _TiledInfoNCE(torch.autograd.Function):
    """Symmetric InfoNCE; inputs ``a, b (B, D)`` and scalar scale ``s``; saves only the LSEs.

    Row i's loss is accumulated as ``LSE_j(Z_ij − Z_ii) >= 0`` (each tile's LSE is shifted by the
    tile's own row maximum, then by ``Z_ii``), never as ``LSE_j Z_ij − Z_ii`` summed over rows at
    the end: that difference of two large sums loses every digit in fp32 when the loss is small.
    Row and column spans are the same, so the diagonal lies in the tiles with ``r0 == c0``; there
    the tile's diagonal is overwritten with the directly computed ``Z_ii`` so that it cancels.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, chunk: int, cache_bytes: int
    ) -> torch.Tensor:
        n = a.shape[0]
        acc = _acc_dtype(a)
        s = scale.to(a.dtype)
        cache: dict[tuple[int, int], torch.Tensor] = {}
        cached_bytes = 0
        diag = (a * b).sum(1).to(acc) * scale.to(acc)  # (B,) Z_ii
        row_lse = torch.full((n,), float("-inf"), dtype=acc, device=a.device)
        col_lse = torch.full((n,), float("-inf"), dtype=acc, device=a.device)
        spans = _spans(n, chunk)
        buf = torch.empty((min(chunk, n), min(chunk, n)), dtype=acc, device=a.device)
        for r0, r1 in spans:
            a_r = a[r0:r1] * s  # (R, D): scaling the smaller operand once is cheaper than the tile
            for c0, c1 in spans:
                tile = (a_r @ b[c0:c1].T).to(acc)  # (R, C)
                if r0 == c0:
                    tile.diagonal().copy_(diag[r0:r1])
                rows, cols = _tile_lse(tile, diag[r0:r1], diag[c0:c1], buf)
                row_lse[r0:r1] = torch.logaddexp(row_lse[r0:r1], rows)
                col_lse[c0:c1] = torch.logaddexp(col_lse[c0:c1], cols)
                size = tile.numel() * tile.element_size()
                if cached_bytes + size <= cache_bytes:
                    cache[(r0, c0)] = tile  # backward skips recomputing this one
                    cached_bytes += size
        loss = (row_lse.sum() + col_lse.sum()) / (2 * n)
        ctx.save_for_backward(a, b, scale, diag, row_lse, col_lse)
        ctx.chunk = chunk
        ctx.cache = cache
        return loss.to(a.dtype)

    @staticmethod
    @once_differentiable  # the backward is not itself differentiable: fail loudly on a 2nd order
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        a, b, scale, diag, row_lse, col_lse = ctx.saved_tensors
        n = a.shape[0]
        acc = row_lse.dtype
        s = scale.to(a.dtype)
        # G_ij = (P^row_ij + P^col_ij − 2δ_ij)/(2B); dL/da = s·G b, dL/db = s·Gᵀ a,
        # dL/ds = Σ G⊙(a bᵀ). log P^row_ij = Z_ij − (Z_ii + row_lse_i).
        row_norm = diag + row_lse
        col_norm = diag + col_lse
        coef = grad_out.to(acc) / (2 * n)
        grad_a = torch.zeros_like(a)
        grad_b = torch.zeros_like(b)
        grad_s = torch.zeros((), dtype=acc, device=a.device)
        spans = _spans(n, ctx.chunk)
        buf = torch.empty((min(ctx.chunk, n), min(ctx.chunk, n)), dtype=acc, device=a.device)
        for r0, r1 in spans:
            a_r = a[r0:r1]
            a_rs = a_r * s
            ga_r = torch.zeros((r1 - r0, a.shape[1]), dtype=acc, device=a.device)
            for c0, c1 in spans:
                b_c = b[c0:c1]
                # A kept tile is consumed (modified in place below), so a second backward with
                # retain_graph recomputes it instead of reading garbage.
                tile = ctx.cache.pop((r0, c0), None)
                if tile is None:
                    tile = (a_rs @ b_c.T).to(acc)  # (R, C) recomputed
                g = buf[: r1 - r0, : c1 - c0]
                torch.sub(tile, row_norm[r0:r1, None], out=g)
                g.exp_()
                tile.sub_(col_norm[None, c0:c1]).exp_()
                g += tile
                if r0 == c0:
                    # P_ii − 1 = expm1(−lse'): exact even when the positive takes all the mass.
                    g.diagonal().copy_(torch.expm1(-row_lse[r0:r1]) + torch.expm1(-col_lse[r0:r1]))
                # Accumulate 2B·G (the 1/(2B) and upstream factor are applied once at the end).
                _accumulate(g.to(a.dtype), a_rs, b_c, ga_r, grad_b[c0:c1])
            grad_s += (ga_r * a_r.to(acc)).sum()
            grad_a[r0:r1] = (ga_r * (scale.to(acc) * coef)).to(a.dtype)
        grad_b.mul_(coef.to(a.dtype))
        grad_scale = (grad_s * coef).to(scale.dtype) if ctx.needs_input_grad[2] else None
        return grad_a, grad_b, grad_scale, None, None


class _TiledSigLIP(torch.autograd.Function):
    """SigLIP ``(1/B) Σ_ij softplus(−Y_ij Z_ij)``, ``Z = s·a bᵀ + t``; saves no tile but those that
    fit in the cache budget, as :class:`_TiledInfoNCE` does.

    The label sign only flips the diagonal, which lies in the tiles with ``r0 == c0``; tiles are
    kept (and recomputed) with that sign already flipped, i.e. as ``−Y⊙Z``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        a: torch.Tensor,
        b: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor,
        chunk: int,
        cache_bytes: int,
    ) -> torch.Tensor:
        n = a.shape[0]
        acc = _acc_dtype(a)
        s = scale.to(a.dtype)
        total = torch.zeros((), dtype=acc, device=a.device)
        cache: dict[tuple[int, int], torch.Tensor] = {}
        cached_bytes = 0
        spans = _spans(n, chunk)
        for r0, r1 in spans:
            a_rs = a[r0:r1] * s
            for c0, c1 in spans:
                tile = _siglip_tile(a_rs, b[c0:c1], bias, acc, r0 == c0)  # (R, C) −Y⊙Z
                total += torch.nn.functional.softplus(tile).sum()
                size = tile.numel() * tile.element_size()
                if cached_bytes + size <= cache_bytes:
                    cache[(r0, c0)] = tile  # backward skips recomputing this one
                    cached_bytes += size
        ctx.save_for_backward(a, b, scale, bias)
        ctx.chunk = chunk
        ctx.cache = cache
        return (total / n).to(a.dtype)

    @staticmethod
    @once_differentiable  # the backward is not itself differentiable: fail loudly on a 2nd order
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        a, b, scale, bias = ctx.saved_tensors
        n = a.shape[0]
        acc = _acc_dtype(a)
        s = scale.to(a.dtype)
        # dL/dZ_ij = σ(Z_ij)/B off the diagonal and −σ(−Z_ii)/B on it.
        coef = grad_out.to(acc) / n
        grad_a = torch.zeros_like(a)
        grad_b = torch.zeros_like(b)
        grad_s = torch.zeros((), dtype=acc, device=a.device)
        grad_t = torch.zeros((), dtype=acc, device=a.device)
        spans = _spans(n, ctx.chunk)
        for r0, r1 in spans:
            a_r = a[r0:r1]
            a_rs = a_r * s
            ga_r = torch.zeros((r1 - r0, a.shape[1]), dtype=acc, device=a.device)
            for c0, c1 in spans:
                b_c = b[c0:c1]
                # A kept tile is consumed (overwritten in place): a second backward with
                # retain_graph recomputes it.
                tile = ctx.cache.pop((r0, c0), None)
                if tile is None:
                    tile = _siglip_tile(a_rs, b_c, bias, acc, r0 == c0)  # (R, C) recomputed
                g = tile.sigmoid_()  # σ(−Y⊙Z); dL/dZ = −Y⊙σ(−Y⊙Z)/B = σ(Z)/B off the diagonal
                if r0 == c0:
                    g.diagonal().neg_()
                grad_t += g.sum()
                g *= coef
                _accumulate(g.to(a.dtype), a_rs, b_c, ga_r, grad_b[c0:c1])
            grad_s += (ga_r * a_r.to(acc)).sum()
            grad_a[r0:r1] = (ga_r * scale.to(acc)).to(a.dtype)
        return (
            grad_a,
            grad_b,
            grad_s.to(scale.dtype) if ctx.needs_input_grad[2] else None,
            (coef * grad_t).to(bias.dtype) if ctx.needs_input_grad[3] else None,
            None,
            None,
        )


def _accumulate(
    g: torch.Tensor, a_rs: torch.Tensor, b_c: torch.Tensor, ga_r: torch.Tensor, grad_b_c: torch.Tensor
) -> None:
    """Add one tile's ``G`` (R, C) to the row gradient ``ga_r += G b_c`` (in ``ga_r``'s accumulation
    dtype, not yet times s) and to the column gradient ``grad_b_c += Gᵀ a_rs`` (C, D), in place."""
    if ga_r.dtype == g.dtype:
        ga_r.addmm_(g, b_c)  # (R, D)
    else:
        ga_r += (g @ b_c).to(ga_r.dtype)
    grad_b_c.addmm_(g.T, a_rs)  # (C, D)


def _siglip_tile(
    a_rs: torch.Tensor, b_c: torch.Tensor, bias: torch.Tensor, acc: torch.dtype, diagonal: bool
) -> torch.Tensor:
    """``−Y⊙Z`` on one tile: ``Z = a_rs b_cᵀ + t`` (R, C), the diagonal negated when the tile holds it."""
    tile = (a_rs @ b_c.T).to(acc).add_(bias.to(acc))  # (R, C); .to is a no-op in fp32: a new matmul
    if diagonal:
        tile.diagonal().neg_()  # Y_ii = +1
    return tile


def _as_scalar(x: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.reshape(())
    return torch.tensor(float(x), dtype=like.dtype, device=like.device)


def tiled_info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    chunk_size: int,
    cache_mb: float = CACHE_MB,
) -> torch.Tensor:
    """Exact symmetric InfoNCE computed in ``(chunk_size, chunk_size)`` tiles.

    Same value and gradients as :func:`modalign.objectives.functional.info_nce` without masks
    (``½[CE(Z, arange) + CE(Zᵀ, arange)]``, ``Z = s·a bᵀ``), with memory
    ``O(B·D + chunk² + cache_mb)``. Tiles are recomputed in backward, except the first ones of
    the forward that fit in ``cache_mb`` MiB, which are kept (a time/memory trade-off: with the
    whole ``(B, B)`` matrix kept the cost is 3 instead of 4 ``B²D`` matmuls).

    Args:
        a: (B, D) rows (unit rows in normal use).
        b: (B, D) rows.
        logit_scale: ``s = 1/τ`` (a scalar tensor keeps its gradient).
        chunk_size: tile side; any positive value, need not divide ``B``.
        cache_mb: MiB of forward tiles kept for backward; 0 recomputes every tile.

    Returns:
        Scalar loss in ``a``'s dtype.

    Example:
        >>> a = torch.nn.functional.normalize(torch.randn(10, 4), dim=1)
        >>> loss = tiled_info_nce(a, a, 10.0, chunk_size=3)
    """
    chunk = _check_chunk(chunk_size)
    if not cache_mb >= 0:
        raise ConfigError(f"cache_mb must be >= 0, got {cache_mb}")
    cache_bytes = int(cache_mb * 2**20)
    out: torch.Tensor = _TiledInfoNCE.apply(a, b, _as_scalar(logit_scale, a), chunk, cache_bytes)
    return out


def tiled_siglip(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float,
    logit_bias: torch.Tensor | float,
    *,
    chunk_size: int,
    cache_mb: float = CACHE_MB,
) -> torch.Tensor:
    """Exact SigLIP loss (open_clip reduction: sum over pairs / B) computed in tiles.

    Memory ``O(B·D + chunk² + cache_mb)``; as in :func:`tiled_info_nce`, the first forward tiles
    that fit in ``cache_mb`` MiB are kept for backward (3 instead of 4 ``B²D`` matmuls for them).

    Args:
        a: (B, D) rows.
        b: (B, D) rows.
        logit_scale: ``s``.
        logit_bias: ``t``.
        chunk_size: tile side.
        cache_mb: MiB of forward tiles kept for backward; 0 recomputes every tile.

    Returns:
        Scalar loss in ``a``'s dtype.
    """
    chunk = _check_chunk(chunk_size)
    if not cache_mb >= 0:
        raise ConfigError(f"cache_mb must be >= 0, got {cache_mb}")
    scale, bias = _as_scalar(logit_scale, a), _as_scalar(logit_bias, a)
    out: torch.Tensor = _TiledSigLIP.apply(a, b, scale, bias, chunk, int(cache_mb * 2**20))
    return out
