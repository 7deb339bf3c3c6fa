"""``chunk_size="auto"``: the rule, the default of the tiling objectives, and auto = untiled.

The threshold tests run at the real ``AUTO_MIN_BATCH`` only through :func:`resolve_chunk` (no
tensors); every test that computes a loss lowers the threshold and the tile side with
``monkeypatch`` (both are read at call time), so that small batches cross it.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modalign.errors import ConfigError
from modalign.objectives import _pairwise, tiled
from modalign.objectives import functional as fn
from modalign.objectives.contrastive import ClipObjective, SiglipObjective
from modalign.objectives.tiled import resolve_chunk, tiled_info_nce, tiled_siglip
from modalign.types import EmbeddingBatch

PAIR = ["image", "text"]
F64 = torch.float64
SMALL_MIN_BATCH = 16  # test threshold: 15 present rows stay untiled, 16 tile
SMALL_CHUNK = 5  # several uneven tiles at 16..23 rows


def test_rule_at_the_documented_numbers():
    # The docstrings of tiled.py and contrastive.py quote these two numbers.
    assert tiled.AUTO_MIN_BATCH == 1024
    assert tiled.AUTO_CHUNK == 4096
    assert resolve_chunk("auto", 1023) is None
    assert resolve_chunk("auto", 1024) == 4096
    assert resolve_chunk("auto", 262_144) == 4096
    assert resolve_chunk("auto", 0) is None
    assert resolve_chunk(None, 10**6) is None  # None never tiles
    assert resolve_chunk(7, 2) == 7  # an int always tiles


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "Auto", "big", "4096"])
@pytest.mark.parametrize("cls", [ClipObjective, SiglipObjective])
def test_bad_chunk_size_is_a_config_error_naming_the_choices(cls, bad):
    with pytest.raises(ConfigError, match="'auto'"):
        cls(PAIR, chunk_size=bad)
    with pytest.raises(ConfigError, match="'auto'"):
        resolve_chunk(bad, 100)


@pytest.mark.parametrize("cls", [ClipObjective, SiglipObjective])
def test_auto_is_the_default_of_the_tiling_objectives(cls):
    assert inspect.signature(cls).parameters["chunk_size"].default == "auto"
    assert cls(PAIR).chunk_size == "auto"
    assert cls(PAIR, chunk_size=None).chunk_size is None
    assert cls(PAIR, chunk_size=64).chunk_size == 64


def test_yaml_params_reach_the_constructor():
    from modalign.config import load_config
    from modalign.workflows.build import build_objective

    path = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
    objectives = "[{name: clip, params: {chunk_size: auto}}, {name: siglip, params: {chunk_size: 512}}]"
    built = build_objective(load_config(path, [f"objectives={objectives}"]))
    assert built.objectives["clip"].chunk_size == "auto"
    assert built.objectives["siglip"].chunk_size == 512
    built = build_objective(load_config(path, ["objectives=[{name: clip, params: {chunk_size: null}}]"]))
    assert built.objectives["clip"].chunk_size is None
    built = build_objective(load_config(path, ["objectives=[{name: clip}]"]))
    assert built.objectives["clip"].chunk_size == "auto"  # the default, no params
    with pytest.raises(ConfigError, match="chunk_size"):
        build_objective(load_config(path, ["objectives=[{name: clip, params: {chunk_size: 0}}]"]))


@pytest.fixture
def small_auto(monkeypatch):
    """Lower the auto threshold and tile side; count the calls of the tiled functions."""
    monkeypatch.setattr(tiled, "AUTO_MIN_BATCH", SMALL_MIN_BATCH)
    monkeypatch.setattr(tiled, "AUTO_CHUNK", SMALL_CHUNK)
    calls: list[tuple[str, int, int]] = []

    def spy(name, f):
        def wrapped(a, *args, **kwargs):
            calls.append((name, a.shape[0], kwargs["chunk_size"]))
            return f(a, *args, **kwargs)

        return wrapped

    monkeypatch.setattr(_pairwise, "tiled_info_nce", spy("info_nce", tiled_info_nce))
    monkeypatch.setattr(_pairwise, "tiled_siglip", spy("siglip", tiled_siglip))
    return calls


def _batch(n_rows: int, n_absent: int, seed: int) -> EmbeddingBatch:
    g = torch.Generator().manual_seed(seed)
    img = F.normalize(torch.randn(n_rows, 12, generator=g), dim=1)
    txt = F.normalize(img + torch.randn(n_rows, 12, generator=g), dim=1)
    present = torch.ones(n_rows, dtype=torch.bool)
    present[torch.randperm(n_rows, generator=g)[:n_absent]] = False
    emb = {"image": img.requires_grad_(), "text": txt.requires_grad_()}
    return EmbeddingBatch(emb, {"image": present, "text": present.clone()})


def _loss_and_grads(obj, batch):
    out = obj(batch)
    params = [p for p in obj.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out.loss, [batch.emb["image"], batch.emb["text"], *params])
    return out.loss.detach(), grads


# (rows, absent rows): the decision counts the jointly present rows, not B.
@pytest.mark.parametrize("n_rows,n_absent", [(15, 0), (19, 4), (16, 0), (20, 4), (23, 0), (40, 9)])
@pytest.mark.parametrize("cls", [ClipObjective, SiglipObjective])
def test_auto_tiles_from_the_threshold_and_equals_untiled(small_auto, cls, n_rows, n_absent):
    present_rows = n_rows - n_absent
    batch = _batch(n_rows, n_absent, seed=n_rows + n_absent)
    auto, untiled = cls(PAIR), cls(PAIR, chunk_size=None)
    with torch.no_grad():  # a scale (and bias) that gives every logit some gradient
        for pname, p in auto.named_parameters():
            p.fill_(math.log(12.0) if pname.endswith("log_scale") else -4.0)
    untiled.load_state_dict(auto.state_dict())
    want_val, want_grads = _loss_and_grads(untiled, batch)
    assert small_auto == []  # chunk_size=None never tiles
    val, grads = _loss_and_grads(auto, batch)
    name = "info_nce" if cls is ClipObjective else "siglip"
    if present_rows >= SMALL_MIN_BATCH:
        assert small_auto == [(name, present_rows, SMALL_CHUNK)]
    else:
        assert small_auto == []
    torch.testing.assert_close(val, want_val, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, want_grads, strict=True):
        scale = float(want.abs().max()) + 1e-12
        assert float((got - want).abs().max()) / scale < 1e-5
    absent = ~batch.present["image"]
    if n_absent:
        assert float(grads[0][absent].abs().max()) == 0 and float(grads[1][absent].abs().max()) == 0


def test_auto_falls_back_to_the_full_matrix_for_options_tiling_lacks(small_auto):
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(30, 8, generator=g, dtype=F64), dim=1)
    b = F.normalize(torch.randn(30, 8, generator=g, dtype=F64), dim=1)
    positives = torch.eye(30, dtype=torch.bool)
    positives[0, 1] = positives[1, 0] = True
    for kwargs in ({"label_smoothing": 0.1}, {"positives": positives}):
        want = fn.info_nce(a, b, 9.0, **kwargs)
        torch.testing.assert_close(fn.info_nce(a, b, 9.0, chunk_size="auto", **kwargs), want, rtol=0, atol=0)
        with pytest.raises(ConfigError, match="label_smoothing"):
            fn.info_nce(a, b, 9.0, chunk_size=4, **kwargs)  # an explicit tile side still refuses
    assert small_auto == []
    emb = EmbeddingBatch({"image": a, "text": b}, {})
    smoothed = ClipObjective(PAIR, label_smoothing=0.1)(emb).loss
    torch.testing.assert_close(smoothed, ClipObjective(PAIR, label_smoothing=0.1, chunk_size=None)(emb).loss)
    assert small_auto == []
    fn.info_nce(a, b, 9.0, chunk_size="auto")
    assert small_auto == [("info_nce", 30, SMALL_CHUNK)]


def test_auto_fp64_equals_untiled_tightly(small_auto):
    g = torch.Generator().manual_seed(4)
    a = F.normalize(torch.randn(33, 7, generator=g, dtype=F64), dim=1).requires_grad_()
    b = F.normalize(torch.randn(33, 7, generator=g, dtype=F64), dim=1).requires_grad_()
    th = torch.tensor(math.log(20.0), dtype=F64, requires_grad=True)
    t = torch.tensor(-3.0, dtype=F64, requires_grad=True)
    for loss in (
        lambda c: fn.info_nce(a, b, th.exp(), chunk_size=c),
        lambda c: fn.siglip(a, b, th.exp(), t, chunk_size=c),
    ):
        want = loss(None)
        want_grads = torch.autograd.grad(want, [a, b, th, t], allow_unused=True)
        got = loss("auto")
        got_grads = torch.autograd.grad(got, [a, b, th, t], allow_unused=True)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        for x, y in zip(got_grads, want_grads, strict=True):
            if y is None:
                assert x is None
            else:
                torch.testing.assert_close(x, y, rtol=1e-11, atol=1e-12)
    assert [c[0] for c in small_auto] == ["info_nce", "siglip"]


@pytest.mark.parametrize("cache_mb", [0.0, 0.0002, 256.0])
def test_siglip_cache_budget_changes_nothing(cache_mb):
    # 0: every tile recomputed in backward; 0.0002 MiB (209 bytes): a few fp64 tiles (a 4x4 one
    # is 128 bytes) are kept, the others recomputed; 256: all kept.
    g = torch.Generator().manual_seed(5)
    a = F.normalize(torch.randn(18, 6, generator=g, dtype=F64), dim=1).requires_grad_()
    b = F.normalize(torch.randn(18, 6, generator=g, dtype=F64), dim=1).requires_grad_()
    th = torch.tensor(2.0, dtype=F64, requires_grad=True)
    t = torch.tensor(-4.0, dtype=F64, requires_grad=True)
    want_val = fn.siglip(a, b, th.exp(), t)
    want = torch.autograd.grad(want_val, [a, b, th, t])
    loss = tiled_siglip(a, b, th.exp(), t, chunk_size=4, cache_mb=cache_mb)
    torch.testing.assert_close(loss, want_val, rtol=1e-12, atol=1e-12)
    for _ in range(2):  # the second backward recomputes the tiles the first one consumed
        got = torch.autograd.grad(loss, [a, b, th, t], retain_graph=True)
        for x, y in zip(got, want, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)
    with pytest.raises(ConfigError):
        tiled_siglip(a, b, 1.0, 0.0, chunk_size=4, cache_mb=-1.0)


@pytest.mark.parametrize("loss", ["info_nce", "siglip"])
def test_tiled_double_backward_fails_loudly(loss):
    # The tiled backward is not differentiable: a second-order gradient must raise, not be wrong.
    a = F.normalize(torch.randn(6, 4, dtype=F64), dim=1).requires_grad_()
    b = F.normalize(torch.randn(6, 4, dtype=F64), dim=1)
    if loss == "info_nce":
        value = tiled_info_nce(a, b, 5.0, chunk_size=4)
    else:
        value = tiled_siglip(a, b, 5.0, -1.0, chunk_size=4)
    (grad,) = torch.autograd.grad(value, a, create_graph=True)
    # once_differentiable leaves the first-order gradient without a graph (no silently partial
    # second-order graph through the saved inputs), so differentiating it again raises.
    assert grad.grad_fn is None
    with pytest.raises(RuntimeError):
        grad.sum().backward()
