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
"""

from __future__ import annotations

from typing import Any

import torch

from modalign.errors import ConfigError

CACHE_MB = 256.0  # default MiB of forward tiles kept for backward (see tiled_info_nce)


def _acc_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _check_chunk(chunk_size: int) -> int:
    if int(chunk_size) < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    return int(chunk_size)


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
                g_in = g.to(a.dtype)
                if acc == a.dtype:
                    ga_r.addmm_(g_in, b_c)  # (R, D), not yet times s
                else:
                    ga_r += (g_in @ b_c).to(acc)
                grad_b[c0:c1].addmm_(g_in.T, a_rs)  # (C, D)
            grad_s += (ga_r * a_r.to(acc)).sum()
            grad_a[r0:r1] = (ga_r * (scale.to(acc) * coef)).to(a.dtype)
        grad_b.mul_(coef.to(a.dtype))
        grad_scale = (grad_s * coef).to(scale.dtype) if ctx.needs_input_grad[2] else None
        return grad_a, grad_b, grad_scale, None, None


class _TiledSigLIP(torch.autograd.Function):
    """SigLIP ``(1/B) Σ_ij softplus(−Y_ij Z_ij)``, ``Z = s·a bᵀ + t``; saves no tile.

    The label sign only flips the diagonal, which lies in the tiles with ``r0 == c0``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        a: torch.Tensor,
        b: torch.Tensor,
        scale: torch.Tensor,
        bias: torch.Tensor,
        chunk: int,
    ) -> torch.Tensor:
        n = a.shape[0]
        acc = _acc_dtype(a)
        s = scale.to(a.dtype)
        total = torch.zeros((), dtype=acc, device=a.device)
        spans = _spans(n, chunk)
        for r0, r1 in spans:
            a_rs = a[r0:r1] * s
            for c0, c1 in spans:
                tile = (a_rs @ b[c0:c1].T).to(acc) + bias.to(acc)  # (R, C)
                if r0 == c0:
                    tile.diagonal().neg_()  # Y_ii = +1
                total += torch.nn.functional.softplus(tile).sum()
        ctx.save_for_backward(a, b, scale, bias)
        ctx.chunk = chunk
        return (total / n).to(a.dtype)

    @staticmethod
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
                tile = (a_rs @ b_c.T).to(acc) + bias.to(acc)  # (R, C)
                if r0 == c0:
                    tile.diagonal().neg_()
                g = torch.sigmoid(tile)
                if r0 == c0:
                    g.diagonal().neg_()
                grad_t += g.sum()
                g *= coef
                g = g.to(a.dtype)
                ga_r += (g @ b_c).to(acc)
                grad_b[c0:c1] += g.T @ a_rs
            grad_s += (ga_r * a_r.to(acc)).sum()
            grad_a[r0:r1] = (ga_r * scale.to(acc)).to(a.dtype)
        return (
            grad_a,
            grad_b,
            grad_s.to(scale.dtype) if ctx.needs_input_grad[2] else None,
            (coef * grad_t).to(bias.dtype) if ctx.needs_input_grad[3] else None,
            None,
        )


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
) -> torch.Tensor:
    """Exact SigLIP loss (open_clip reduction: sum over pairs / B) computed in tiles.

    Args:
        a: (B, D) rows.
        b: (B, D) rows.
        logit_scale: ``s``.
        logit_bias: ``t``.
        chunk_size: tile side.

    Returns:
        Scalar loss in ``a``'s dtype.
    """
    chunk = _check_chunk(chunk_size)
    out: torch.Tensor = _TiledSigLIP.apply(a, b, _as_scalar(logit_scale, a), _as_scalar(logit_bias, a), chunk)
    return out
