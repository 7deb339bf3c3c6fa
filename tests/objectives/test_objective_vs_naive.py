"""Every functional loss against a naive loop from the paper's formula: values and gradients."""

from __future__ import annotations

import naive_objectives as naive
import pytest
import torch
import torch.nn.functional as F

from modalign.objectives import functional as fn

B, D = 7, 5  # uneven on purpose


def unit(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=torch.float64), dim=-1)


def leaves(*tensors):
    return [t.clone().requires_grad_(True) for t in tensors]


def check(ours_fn, naive_fn, inputs, rtol=1e-10, atol=1e-12):
    """Compare value and gradients w.r.t. every input of two loss closures."""
    x1 = leaves(*inputs)
    x2 = leaves(*inputs)
    l1, l2 = ours_fn(*x1), naive_fn(*x2)
    torch.testing.assert_close(l1, torch.as_tensor(l2, dtype=l1.dtype), rtol=rtol, atol=atol)
    g1 = torch.autograd.grad(l1, x1, allow_unused=True)
    g2 = torch.autograd.grad(l2, x2, allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        if a is None or b is None:
            assert (a is None or float(a.abs().max()) == 0) and (b is None or float(b.abs().max()) == 0)
            continue
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def test_info_nce():
    a, b = unit(B, D, seed=0), unit(B, D, seed=1)
    th = torch.tensor(2.3, dtype=torch.float64)
    check(
        lambda a, b, th: fn.info_nce(a, b, th.exp()),
        lambda a, b, th: naive.clip_loss(a, b, th.exp()),
        [a, b, th],
    )


def test_info_nce_label_smoothing():
    a, b = unit(B, D, seed=2), unit(B, D, seed=3)
    check(
        lambda a, b: fn.info_nce(a, b, 9.0, label_smoothing=0.1),
        lambda a, b: naive.clip_loss(a, b, 9.0, smoothing=0.1),
        [a, b],
    )


def test_info_nce_multi_positive():
    a, b = unit(B, D, seed=4), unit(B, D, seed=5)
    labels = torch.tensor([0, 1, 0, 2, 1, 3, 0])
    pos = labels[:, None] == labels[None, :]
    check(
        lambda a, b: fn.info_nce(a, b, 7.0, positives=pos),
        lambda a, b: naive.clip_multi_positive(a, b, 7.0, pos),
        [a, b],
    )


def test_siglip():
    a, b = unit(B, D, seed=6), unit(B, D, seed=7)
    th, t = torch.tensor(2.0, dtype=torch.float64), torch.tensor(-3.0, dtype=torch.float64)
    check(
        lambda a, b, th, t: fn.siglip(a, b, th.exp(), t),
        lambda a, b, th, t: naive.siglip_loss(a, b, th.exp(), t),
        [a, b, th, t],
    )


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("intra", [False, True])
def test_dcl(weighted, intra):
    a, b = unit(B, D, seed=8), unit(B, D, seed=9)
    check(
        lambda a, b: fn.dcl(a, b, 0.2, weighted=weighted, intra_modal_negatives=intra),
        lambda a, b: naive.dcl_loss(a, b, 0.2, weighted=weighted, intra=intra),
        [a, b],
    )


@pytest.mark.parametrize("reverse", ["cwcl", "infonce"])
def test_cwcl(reverse):
    a, b, u = unit(B, D, seed=10), unit(B, D, seed=11), unit(B, D, seed=12)
    check(
        lambda a, b: fn.cwcl(a, b, u, 6.0, reverse=reverse),
        lambda a, b: naive.cwcl_loss(a, b, u, 6.0, reverse=reverse),
        [a, b],
    )


@pytest.mark.parametrize("m", [3, 4])
def test_symile_n_squared(m):
    n = 4 if m == 4 else 5
    reps = [unit(n, D, seed=20 + k) for k in range(m)]
    th = torch.tensor(1.5, dtype=torch.float64)
    check(
        lambda th, *r: fn.symile(list(r), th.exp(), negatives="n_squared"),
        lambda th, *r: naive.symile_n_squared(list(r), th.exp()),
        [th, *reps],
    )


def test_symile_n_seeded():
    reps = [unit(B, D, seed=30 + k) for k in range(3)]
    # Permutation order: anchors in order, then non-anchors in increasing index.
    torch.manual_seed(5)
    perms = {m: {k: torch.randperm(B) for k in range(3) if k != m} for m in range(3)}

    def ours(*r):
        torch.manual_seed(5)
        return fn.symile(list(r), 4.0, negatives="n")

    check(ours, lambda *r: naive.symile_n(list(r), 4.0, perms), reps)


def test_mip_scores():
    q1, q2, c = unit(B, D, seed=40), unit(B, D, seed=41), unit(4, D, seed=42)
    got = fn.mip_scores([q1, q2], c)
    want = torch.tensor(
        [[float(naive.mip(q1[i], q2[i], c[k])) for k in range(4)] for i in range(B)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_m3co():
    a, b = torch.randn(B, D, dtype=torch.float64), unit(B, D, seed=44)
    perm = torch.tensor([3, 1, 0, 6, 2, 5, 4])  # fixed points 1 and 5
    betas = torch.tensor([0.3, 1.0, 0.9, 0.05, 1.0, 0.5, 0.7], dtype=torch.float64)
    check(
        lambda a, b: fn.m3co(a, b, perm=perm, betas=betas, temperature=0.1),
        lambda a, b: naive.m3co_loss(a, b, perm, betas, 0.1),
        [a, b],
    )


def test_soft_clip():
    a, b = unit(B, D, seed=45), unit(B, D, seed=46)
    check(
        lambda a, b: fn.soft_clip(a, b, 0.125),
        lambda a, b: naive.soft_clip_loss(a, b, 0.125),
        [a, b],
    )


def test_m2mix():
    a, b = unit(B, D, seed=47), unit(B, D, seed=48)
    check(
        lambda a, b: fn.m2mix(a, b, 0.3, 0.05, 0.07, mix_weight=0.5),
        lambda a, b: naive.m2mix_loss(a, b, 0.3, 0.05, 0.07, 0.5),
        [a, b],
    )


def test_geometry_terms():
    a, b = unit(B, D, seed=49), unit(B, D, seed=50)
    check(lambda a: fn.uniformity(a, 2.0), lambda a: naive.uniformity(a, 2.0), [a])
    check(lambda a, b: fn.alignment(a, b, 2.0), lambda a, b: naive.alignment(a, b, 2.0), [a, b])
    check(lambda a, b: fn.alignment(a, b, 1.0), lambda a, b: naive.alignment(a, b, 1.0), [a, b])
    check(
        lambda a, b: fn.cross_uniformity(a, b, 2.0),
        lambda a, b: naive.cross_uniformity(a, b, 2.0),
        [a, b],
    )


def test_affinity_distillation():
    sa, sb = unit(B, D, seed=51), unit(B, D, seed=52)
    ta, tb = unit(B, 3, seed=53), unit(B, 3, seed=54)  # teacher dim differs
    check(
        lambda sa, sb, ta, tb: fn.affinity_distillation(sa, sb, ta, tb, 20.0, 50.0),
        lambda sa, sb, ta, tb: naive.affinity(sa, sb, ta.detach(), tb.detach(), 20.0, 50.0),
        [sa, sb, ta, tb],
    )


def test_feature_distillation():
    s, t = unit(B, D, seed=55), unit(B, D, seed=56)
    check(
        lambda s, t: fn.feature_distillation(s, t),
        lambda s, t: naive.feature_distillation(s, t.detach()),
        [s, t],
    )
    present = torch.tensor([1, 0, 1, 1, 0, 1, 1], dtype=torch.bool)
    check(
        lambda s, t: fn.feature_distillation(s, t, present=present),
        lambda s, t: naive.feature_distillation(s[present], t[present].detach()),
        [s, t],
    )
    cos = (s * t).sum(1)  # unit rows: half the squared distance is 1 - cos
    torch.testing.assert_close(fn.feature_distillation(s, t), (1 - cos).mean(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("queue", [False, True])
def test_momentum_itc(queue):
    a, b, am, bm = (unit(B, D, seed=60 + k) for k in range(4))
    qa, qb = (unit(5, D, seed=70), unit(5, D, seed=71)) if queue else (None, None)
    tau = torch.tensor(0.1, dtype=torch.float64)
    check(
        lambda a, b, tau: fn.momentum_itc(a, b, am, bm, tau, alpha=0.4, queue_a=qa, queue_b=qb),
        lambda a, b, tau: naive.albef_itc(a, b, am, bm, tau, 0.4, qa, qb),
        [a, b, tau],
    )
