"""METHODS.md §1.6 golden values (fp64, 1e-12) and the tiled loss against the untiled one."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modalign.objectives import functional as fn
from modalign.objectives.tiled import tiled_info_nce, tiled_siglip

F64 = torch.float64
TOL = {"rtol": 0, "atol": 1e-12}


def _rows(f):
    i = torch.arange(8, dtype=F64)[:, None]
    j = torch.arange(16, dtype=F64)[None, :]
    return F.normalize(f(i, j), dim=1)


IMG = _rows(lambda i, j: torch.sin(0.7 * i + 0.3 * j + 0.1))
TXT = _rows(lambda i, j: torch.cos(0.5 * i - 0.2 * j + 0.3))
TXT2 = _rows(lambda i, j: torch.sin(0.7 * i + 0.3 * j + 0.1) + 0.5 * torch.cos(0.5 * i - 0.2 * j + 0.3))
T_IMG = _rows(lambda i, j: torch.sin(0.9 * i + 0.1 * j + 0.2))
T_TXT = _rows(lambda i, j: torch.cos(0.4 * i + 0.25 * j))


def close(x, value, tol=TOL):
    torch.testing.assert_close(torch.as_tensor(x, dtype=F64), torch.tensor(value, dtype=F64), **tol)


@pytest.mark.parametrize("chunk", [None, 3, 8, 100])
def test_clip_goldens(chunk):
    close(fn.info_nce(IMG, TXT, 1 / 0.07, chunk_size=chunk), 8.181885346973457)
    close(fn.info_nce(IMG, TXT2, 1 / 0.07, chunk_size=chunk), 0.4814777912169128)


@pytest.mark.parametrize("chunk", [None, 3])
def test_clip_gradient_goldens(chunk):
    img, txt = IMG.clone().requires_grad_(), TXT.clone().requires_grad_()
    th = torch.tensor(math.log(1 / 0.07), dtype=F64, requires_grad=True)
    loss = fn.info_nce(img, txt, th.exp(), chunk_size=chunk)
    g_img, g_txt, g_th = torch.autograd.grad(loss, [img, txt, th])
    close(g_th, 7.715944800379719)
    close(g_img.norm(), 5.136709160701743)
    close(g_txt.norm(), 5.898951533710206)

    img, txt = IMG.clone().requires_grad_(), TXT2.clone().requires_grad_()
    th = torch.tensor(math.log(1 / 0.07), dtype=F64, requires_grad=True)
    loss = fn.info_nce(img, txt, th.exp(), chunk_size=chunk)
    g_img, g_txt, g_th = torch.autograd.grad(loss, [img, txt, th])
    close(g_th, -0.089706732149, {"rtol": 0, "atol": 1e-12})
    close(g_img[0, :3], [0.0688225250069043, 0.06714296964056585, 0.059523642216022375])
    close(g_txt.sum(), 0.838607798495, {"rtol": 0, "atol": 1e-12})


def test_clip_bias_changes_nothing():
    # Softmax is shift-invariant: a bias on every logit changes neither value nor gradients.
    b = torch.tensor(-1.0, dtype=F64, requires_grad=True)
    logits = (IMG @ TXT.T) / 0.07 + b
    target = torch.arange(8)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    close(loss, 8.181885346973457)
    assert abs(float(torch.autograd.grad(loss, b)[0])) < 1e-14


@pytest.mark.parametrize("chunk", [None, 3])
def test_siglip_goldens(chunk):
    close(fn.siglip(IMG, TXT, 10.0, -10.0, chunk_size=chunk), 7.70638305447738)
    close(fn.siglip(IMG, TXT2, 10.0, -10.0, chunk_size=chunk), 1.5054889942220777)
    close(fn.siglip(IMG, TXT, 1 / 0.07, 0.0, chunk_size=chunk), 28.351443746015555)
    img, txt = IMG.clone().requires_grad_(), TXT2.clone().requires_grad_()
    th = torch.tensor(math.log(10.0), dtype=F64, requires_grad=True)
    bias = torch.tensor(-10.0, dtype=F64, requires_grad=True)
    loss = fn.siglip(img, txt, th.exp(), bias, chunk_size=chunk)
    g_img, g_txt, g_th, g_b = torch.autograd.grad(loss, [img, txt, th, bias])
    close(g_th, -3.225979111704, {"rtol": 0, "atol": 1e-11})
    close(g_b, -0.340907605394, {"rtol": 0, "atol": 1e-11})
    close(g_img[0, :3], [0.010430969809220477, -0.018803334813353834, -0.048480438734570835])
    close(g_txt.sum(), 2.382220125149, {"rtol": 0, "atol": 1e-11})


def test_distill_goldens():
    # open_clip DistillClipLoss distill term = TinyCLIP soft loss; student s = 1/0.07, teacher 100.
    close(fn.affinity_distillation(IMG, TXT, T_IMG, T_TXT, 1 / 0.07, 100.0), 10.18133823948451)
    close(fn.affinity_distillation(IMG, TXT2, T_IMG, T_TXT, 1 / 0.07, 100.0), 5.628974725592963)


def test_torchmultimodal_unit_goldens():
    # TMM's own test: seed 1234, unnormalised randn(3, 5), default temperature; TMM computes in
    # float32 (log-temperature stored in float32), hence the 1e-6 tolerance.
    torch.manual_seed(1234)
    a, b = torch.randn(3, 5), torch.randn(3, 5)
    s = float(torch.tensor(math.log(1 / 0.07)).exp())
    close(fn.info_nce(a.double(), b.double(), s), 9.875297546, {"rtol": 1e-6, "atol": 0})
    close(
        fn.info_nce(a.double(), b.double(), s, label_smoothing=0.1),
        10.252399444,
        {"rtol": 1e-6, "atol": 0},
    )


@pytest.mark.parametrize("n,chunk", [(1, 1), (2, 5), (29, 4), (64, 64), (65, 16), (100, 33)])
@pytest.mark.parametrize("loss", ["info_nce", "siglip"])
def test_tiled_equals_untiled_fp32(n, chunk, loss):
    g = torch.Generator().manual_seed(n)
    a = F.normalize(torch.randn(n, 12, generator=g), dim=1)
    b = F.normalize(torch.randn(n, 12, generator=g) + a, dim=1)

    def run(chunk_size):
        x, y = a.clone().requires_grad_(), b.clone().requires_grad_()
        th = torch.tensor(math.log(30.0), requires_grad=True)
        t = torch.tensor(-4.0, requires_grad=True)
        if loss == "info_nce":
            if n < 2:
                out = tiled_info_nce(x, y, th.exp(), chunk_size=chunk) if chunk_size else None
                return out, None
            if chunk_size is None:
                val = fn.info_nce(x, y, th.exp())
            else:  # recompute every tile in backward (the path huge batches take)
                val = tiled_info_nce(x, y, th.exp(), chunk_size=chunk_size, cache_mb=0)
            grads = torch.autograd.grad(val, [x, y, th])
        else:
            val = fn.siglip(x, y, th.exp(), t, chunk_size=chunk_size)
            grads = torch.autograd.grad(val, [x, y, th, t])
        return val, grads

    ref_val, ref_grads = run(None)
    val, grads = run(chunk)
    if ref_grads is None:
        return
    # float32 summed in another order: a few ulp of the logits (up to s = 30, ulp ~2e-6), which is
    # the whole value when the loss is ~0 (n = 2), so an absolute tolerance of that size too
    torch.testing.assert_close(val, ref_val, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        scale = float(want.abs().max()) + 1e-12
        assert float((got - want).abs().max()) / scale < 1e-5


@pytest.mark.parametrize("cache_mb", [0.0, 0.01, 256.0])
def test_tiled_cache_budget_changes_nothing(cache_mb):
    # 0: every tile recomputed in backward; 0.01 MiB: some kept; 256: all kept. retain_graph lets
    # a second backward run after the kept tiles were consumed.
    g = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(50, 8, generator=g, dtype=F64), dim=1).requires_grad_()
    b = F.normalize(torch.randn(50, 8, generator=g, dtype=F64), dim=1).requires_grad_()
    th = torch.tensor(2.5, dtype=F64, requires_grad=True)
    want = torch.autograd.grad(fn.info_nce(a, b, th.exp()), [a, b, th])
    loss = tiled_info_nce(a, b, th.exp(), chunk_size=16, cache_mb=cache_mb)
    close(loss, float(fn.info_nce(a, b, th.exp())))
    for _ in range(2):
        got = torch.autograd.grad(loss, [a, b, th], retain_graph=True)
        for x, y in zip(got, want, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)


def test_tiled_fp64_matches_and_chunk_independent():
    g = torch.Generator().manual_seed(0)
    a = F.normalize(torch.randn(37, 6, generator=g, dtype=F64), dim=1)
    b = F.normalize(torch.randn(37, 6, generator=g, dtype=F64), dim=1)
    ref = fn.info_nce(a, b, 20.0)
    for chunk in (1, 5, 36, 37, 1000):
        close(tiled_info_nce(a, b, 20.0, chunk_size=chunk), float(ref))
        close(tiled_info_nce(a, b, 20.0, chunk_size=chunk, cache_mb=0), float(ref))
        sig = float(fn.siglip(a, b, 20.0, -3.0))
        close(tiled_siglip(a, b, 20.0, -3.0, chunk_size=chunk), sig, {"rtol": 1e-12, "atol": 0})


def test_tiled_bad_chunk_raises():
    from modalign.errors import ConfigError

    a = torch.randn(4, 3)
    with pytest.raises(ConfigError):
        fn.info_nce(a, a, 1.0, chunk_size=0)
    with pytest.raises(ConfigError):
        fn.info_nce(a, a, 1.0, chunk_size=2, label_smoothing=0.1)
