"""Modality dropout, M3Co / Soft-CLIP identities, MM-Lego merge identities."""

from __future__ import annotations

import math

import pytest
import torch

from modalign.errors import ConfigError
from modalign.fusion import modality_dropout, shuffled_order
from modalign.fusion.lego import (
    LegoBlock,
    LegoFusion,
    merge_heads_linear,
    merge_heads_slerp,
    merge_latents,
)
from modalign.objectives.functional import m3co, soft_clip


def test_modality_dropout_rates_and_keep_one():
    p = {"a": torch.ones(4000, dtype=torch.bool), "b": torch.rand(4000) > 0.5}
    g = torch.Generator().manual_seed(0)
    out = modality_dropout(p, {"a": 0.3}, generator=g)
    assert torch.equal(out["b"], p["b"])
    assert abs(1 - out["a"].float().mean().item() - 0.3) < 0.03
    full = modality_dropout(p, {"a": 1.0, "b": 1.0}, keep_one=True, generator=g)
    had = p["a"] | p["b"]
    assert torch.equal(full["a"] | full["b"], had)
    assert not (full["a"] & ~p["a"]).any() and not (full["b"] & ~p["b"]).any()
    with pytest.raises(ConfigError):
        modality_dropout(p, {"a": 1.5})
    with pytest.raises(ConfigError):
        modality_dropout(p, {"zzz": 0.1})


def test_shuffled_order_is_a_permutation():
    g = torch.Generator().manual_seed(0)
    orders = {shuffled_order(["a", "b", "c"], g) for _ in range(50)}
    assert len(orders) == 6


def naive_info_nce(a, b, tau):
    a = a / a.norm(dim=1, keepdim=True)
    b = b / b.norm(dim=1, keepdim=True)
    n = a.shape[0]
    tot1 = tot2 = 0.0
    for i in range(n):
        row = [float(a[i] @ b[j]) / tau for j in range(n)]
        col = [float(b[i] @ a[j]) / tau for j in range(n)]
        tot1 += math.log(sum(math.exp(v) for v in row)) - row[i]
        tot2 += math.log(sum(math.exp(v) for v in col)) - col[i]
    return 0.5 * (tot1 + tot2) / n


def soft_cross_entropy(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return -(t * torch.log_softmax(z, dim=1)).sum(1).mean()


def m3co_loss(a, b, perm, lam, target_mode="add"):
    # M3CoL's use: the mixed side a unnormalised, the fixed side b unit rows, tau = 0.1.
    b = torch.nn.functional.normalize(b, dim=1)
    return m3co(a, b, perm=perm, betas=lam, temperature=0.1, target_mode=target_mode)


def soft_clip_loss(p, t):
    unit = torch.nn.functional.normalize
    return soft_clip(unit(p, dim=1), unit(t, dim=1), 0.125)


def test_m3co_without_mixing_is_symmetric_infonce_at_tau_01():
    torch.manual_seed(0)
    a, b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    got = m3co_loss(a, b, torch.randperm(6), torch.ones(6, dtype=torch.float64))
    assert math.isclose(float(got), naive_info_nce(a, b, 0.1), rel_tol=1e-9)


def test_m3co_targets_add_on_fixed_points():
    torch.manual_seed(1)
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    perm = torch.tensor([0, 2, 1, 3])  # fixed points 0 and 3
    lam = torch.tensor([0.3, 0.6, 0.9, 1.0], dtype=torch.float64)
    mixed = lam[:, None] * a + (1 - lam[:, None]) * a[perm]
    z = (mixed / mixed.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T / 0.1
    t = torch.zeros(4, 4, dtype=torch.float64)
    for i in range(4):
        t[i, i] += lam[i]
        t[i, perm[i]] += 1 - lam[i]
    assert torch.allclose(t.sum(1), torch.ones(4, dtype=torch.float64))
    ref = 0.5 * (soft_cross_entropy(z, t) + soft_cross_entropy(z.T, t.T))
    assert math.isclose(float(m3co_loss(a, b, perm, lam)), float(ref), rel_tol=1e-12)
    assign = m3co_loss(a, b, perm, lam, target_mode="assign")
    assert not math.isclose(float(assign), float(ref))


def test_soft_clip_with_itself_is_the_target_entropy_pair():
    torch.manual_seed(2)
    t = torch.randn(5, 3, dtype=torch.float64)
    tn = t / t.norm(dim=1, keepdim=True)
    q = torch.softmax(tn @ tn.T / 0.125, dim=1)
    ent = float(-(q * q.log()).sum(1).mean())
    # P = Q-logits, so the first term is H(Q); the second uses Pᵀ = P (symmetric) too.
    assert math.isclose(float(soft_clip_loss(t, t)), ent, rel_tol=1e-9)


def test_lego_merge_identities():
    lat = torch.randn(2, 3, 4, 5, dtype=torch.complex64)
    two = torch.stack([lat[0], lat[0]])
    mask = torch.ones(2, 3, dtype=torch.bool)
    torch.testing.assert_close(merge_latents(two, mask, "sum"), 2 * lat[0])
    torch.testing.assert_close(merge_latents(two, mask, "mean"), lat[0])
    mask[1, 0] = False
    torch.testing.assert_close(merge_latents(lat, mask, "sum")[0], lat[0, 0])
    torch.testing.assert_close(merge_latents(lat, mask, "product")[0], lat[0, 0])


def test_fft_round_trip():
    x = torch.randn(2, 8, 5)
    # float32 round trip: errors scale with the row's norm, not with each entry, hence the atol
    torch.testing.assert_close(torch.fft.ifft(torch.fft.fft(x, dim=1), dim=1).real, x, atol=1e-5, rtol=1e-5)


def test_slerp_endpoints_and_norm():
    torch.manual_seed(0)
    w1, w2 = torch.randn(3, 4), torch.randn(3, 4)
    torch.testing.assert_close(merge_heads_slerp(w1, w2, alpha=1.0), w1)
    torch.testing.assert_close(merge_heads_slerp(w1, w2, alpha=0.0), w2)
    # Midway the direction bisects the two (equal angles to both).
    mid = merge_heads_slerp(w1, w2, alpha=0.5).flatten()
    cos1 = float(mid @ w1.flatten() / (mid.norm() * w1.norm()))
    cos2 = float(mid @ w2.flatten() / (mid.norm() * w2.norm()))
    assert math.isclose(cos1, cos2, rel_tol=1e-5)
    torch.testing.assert_close(
        merge_heads_slerp(w1, w2, 0.8, reference_alpha=True), merge_heads_slerp(w1, w2, 0.2)
    )
    torch.testing.assert_close(merge_heads_slerp(w1, 2 * w1, 0.5), merge_heads_linear(w1, 2 * w1, 0.5))
    torch.testing.assert_close(merge_heads_linear(w1, w2, 0.8), 0.8 * w1 + 0.2 * w2)


def test_lego_from_blocks_copies_weights_and_dead_attention_flag():
    torch.manual_seed(0)
    kw = dict(latent_channels=4, latent_dim=8, heads=2, head_dim=4, tokens=2, token_dim=8)
    ba, bb = LegoBlock(3, **kw), LegoBlock(2, **kw)
    fused = LegoFusion.from_blocks({"a": (3, ba), "b": (2, bb)}, **kw).eval()
    xa = torch.randn(4, 3)
    with torch.no_grad():
        out = fused({"a": xa}, {}).fused
        ref = fused.norm(ba(xa).real.mean(dim=1))
    torch.testing.assert_close(out, ref)
    # dead_attention: perturbing the modality layer's attention changes nothing.
    dead = LegoBlock(3, dead_attention=True, **kw).eval()
    with torch.no_grad():
        before = dead(xa)
        for p in dead.modality[0].attn.parameters():
            p.add_(1.0)
        torch.testing.assert_close(dead(xa), before)
