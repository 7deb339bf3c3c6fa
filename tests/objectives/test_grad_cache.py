"""GradCache: every gradient (encoders, logit scale, bias) equals the one-batch gradient, fp64."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modalign.errors import ConfigError
from modalign.registry import lookup
from modalign.training import grad_cache
from modalign.training.grad_cache import (
    cached_backward,
    concat_embedding_batches,
    split_embedding_batch,
)
from modalign.types import EmbeddingBatch

B, A, D_IN, D = 48, 4, 7, 5


class Towers(nn.Module):
    """Two small towers with dropout (random masks make RNG replay matter)."""

    def __init__(self):
        super().__init__()
        self.x = nn.Sequential(nn.Linear(D_IN, 16), nn.Tanh(), nn.Dropout(0.3), nn.Linear(16, D))
        self.y = nn.Sequential(nn.Linear(D_IN, 16), nn.Dropout(0.3), nn.Tanh(), nn.Linear(16, D))

    def forward(self, mb):
        xs, ys, present = mb
        ex = nn.functional.normalize(self.x(xs), dim=1)
        ey = nn.functional.normalize(self.y(ys), dim=1)
        return EmbeddingBatch({"x": ex, "y": ey}, {"x": present, "y": torch.ones_like(present)})


def setup(objective_name):
    torch.manual_seed(0)
    model = Towers().double().train()
    objective = lookup("objective", objective_name)(["x", "y"]).double()
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(B, D_IN, generator=g, dtype=torch.float64)
    ys = torch.randn(B, D_IN, generator=g, dtype=torch.float64)
    present = torch.rand(B, generator=g) > 0.15
    size = B // A
    mbs = [(xs[i : i + size], ys[i : i + size], present[i : i + size]) for i in range(0, B, size)]
    return model, objective, mbs


def grads(*modules):
    return {f"{i}.{n}": p.grad.clone() for i, m in enumerate(modules) for n, p in m.named_parameters()}


def reference(model, objective, mbs):
    # One forward over the whole batch with the same dropout draws: micro-batches in order.
    torch.manual_seed(123)
    full = concat_embedding_batches([model(mb) for mb in mbs])
    out = objective(full)
    out.loss.backward()
    return out, grads(model, objective), torch.get_rng_state()


def cached(model, objective, mbs):
    torch.manual_seed(123)
    out = cached_backward(model, mbs, objective)
    return out, grads(model, objective), torch.get_rng_state()


@pytest.mark.parametrize("objective_name", ["clip", "siglip"])
def test_cached_equals_full_batch(objective_name):
    model, objective, mbs = setup(objective_name)
    ref_out, ref_grads, ref_rng = reference(model, objective, mbs)
    model2, objective2, _ = setup(objective_name)
    out, got, rng = cached(model2, objective2, mbs)
    torch.testing.assert_close(out.loss, ref_out.loss.detach(), rtol=1e-12, atol=0)
    assert set(got) == set(ref_grads)
    for name, want in ref_grads.items():
        rel = float((got[name] - want).abs().max()) / (float(want.abs().max()) + 1e-300)
        assert rel <= 1e-10, f"{name}: relative error {rel:.2e}"
    assert torch.equal(rng, ref_rng)  # RNG continues as after a plain step


def test_without_rng_replay_the_gradients_differ(monkeypatch):
    # Negative control: the comparison above would catch a missing RNG replay.
    model, objective, mbs = setup("clip")
    _, ref_grads, _ = reference(model, objective, mbs)
    model2, objective2, _ = setup("clip")
    monkeypatch.setattr(grad_cache.RngState, "restore", lambda self: None)
    _, got, _ = cached(model2, objective2, mbs)
    worst = max(
        float((got[n] - w).abs().max()) / float(w.abs().max())
        for n, w in ref_grads.items()
        if n.startswith("0.")
    )
    assert worst > 1e-3


def test_split_and_concat_round_trip():
    emb = {"x": torch.randn(10, 3), "y": torch.randn(10, 3)}
    present = {"x": torch.rand(10) > 0.5}
    parts = split_embedding_batch(EmbeddingBatch(emb, present), [4, 4, 2])
    back = concat_embedding_batches(parts)
    assert torch.equal(back.emb["x"], emb["x"]) and torch.equal(back.present["x"], present["x"])
    with pytest.raises(ConfigError):
        cached_backward(lambda mb: mb, [], lambda b: None)
