"""Contract tests parametrised over every registered objective.

Finite loss, gradients reach every present input row (and never an absent one), every learnable
parameter gets a gradient, ``present`` masks equal deleting the rows, fp32 agrees with fp64,
``clamp_`` runs, and a state_dict round trip reproduces the loss.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from objective_specs import PAIR, SAME_DIM_TEACHER, SPECS, D

from modalign.errors import ConfigError
from modalign.objectives import CombinedObjective
from modalign.registry import lookup, names
from modalign.types import EmbeddingBatch

B = 10


def spec(name):
    return SPECS.get(name, (PAIR, {}, []))


def make(name, dtype=torch.float64):
    modalities, params, _ = spec(name)
    obj = lookup("objective", name)(list(modalities), **params)
    return obj.to(dtype)


def batch_for(name, dtype, present=None, seed=0, requires_grad=False):
    modalities, _, extra = spec(name)
    g = torch.Generator().manual_seed(seed)
    emb = {}
    for m in modalities:
        emb[m] = F.normalize(torch.randn(B, D, generator=g, dtype=torch.float64), dim=1).to(dtype)
    for k in extra:
        dim = D if name in SAME_DIM_TEACHER else 4
        emb[k] = F.normalize(torch.randn(B, dim, generator=g, dtype=torch.float64), dim=1).to(dtype)
    if requires_grad:
        emb = {k: v.requires_grad_(True) for k, v in emb.items()}
    if present is None:
        present = torch.ones(B, dtype=torch.bool)
    pres = {m: present.clone() for m in modalities}
    return EmbeddingBatch(emb, pres)


def run(obj, batch, seed=0):
    torch.manual_seed(seed)  # stochastic objectives (m3co, m2mix) draw from the global RNG
    return obj(batch)


def test_registry_has_the_issue_objectives():
    expected = {
        "clip", "siglip", "dcl", "dclw", "cwcl", "symile", "m3co", "soft_clip", "m2mix",
        "uniformity", "alignment", "cross_uniformity", "cua", "cuaxu",
        "affinity_distillation", "feature_distillation", "momentum_itc",
    }  # fmt: skip
    assert expected <= set(names("objective"))


@pytest.mark.parametrize("name", names("objective"))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_and_gradients_reach_inputs(name, dtype):
    present = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1, 1], dtype=torch.bool)
    obj = make(name, dtype)
    batch = batch_for(name, dtype, present, requires_grad=True)
    out = run(obj, batch)
    assert out.loss.dim() == 0 and out.loss.dtype == dtype
    assert torch.isfinite(out.loss)
    assert all(isinstance(v, float) for v in out.metrics.values())
    out.loss.backward()
    for m in spec(name)[0]:
        grad = batch.emb[m].grad
        assert grad is not None, f"{name}: no gradient reaches {m}"
        assert torch.isfinite(grad).all()
        assert float(grad[present].abs().sum()) > 0, f"{name}: zero gradient on present rows of {m}"
        assert float(grad[~present].abs().max()) == 0, f"{name}: gradient leaks into absent rows"
    for pname, p in obj.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad), f"{name}: no grad for {pname}"
    obj.clamp_()


@pytest.mark.parametrize("name", names("objective"))
def test_present_equals_deleted_rows(name):
    present = torch.tensor([1, 0, 1, 1, 1, 0, 1, 1, 0, 1], dtype=torch.bool)
    full = batch_for(name, torch.float64, present)
    # Absent rows hold junk: the mask, not the value, must exclude them.
    emb = {k: torch.where(present[:, None], v, torch.full_like(v, 7.0)) for k, v in full.emb.items()}
    masked = run(make(name), EmbeddingBatch(emb, full.present))
    deleted = run(make(name), EmbeddingBatch({k: v[present] for k, v in full.emb.items()}, {}))
    torch.testing.assert_close(masked.loss, deleted.loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", names("objective"))
def test_fp32_agrees_with_fp64(name):
    l64 = run(make(name, torch.float64), batch_for(name, torch.float64)).loss
    l32 = run(make(name, torch.float32), batch_for(name, torch.float32)).loss
    torch.testing.assert_close(l32.double(), l64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", names("objective"))
def test_all_absent_gives_zero_with_graph(name):
    absent = torch.zeros(B, dtype=torch.bool)
    obj = make(name)
    batch = batch_for(name, torch.float64, absent, requires_grad=True)
    out = run(obj, batch)
    assert float(out.loss) == 0.0
    out.loss.backward()  # still connected to the graph: no error


@pytest.mark.parametrize("name", names("objective"))
def test_state_dict_round_trip(name):
    obj = make(name)
    with torch.no_grad():
        for p in obj.parameters():
            p.add_(0.1)
    obj.clamp_()
    fresh = make(name)
    fresh.load_state_dict(obj.state_dict())
    obj.eval(), fresh.eval()
    batch = batch_for(name, torch.float64)
    torch.testing.assert_close(run(obj, batch).loss, run(fresh, batch).loss, rtol=0, atol=0)


@pytest.mark.parametrize("name", names("objective"))
def test_one_modality_is_a_config_error(name):
    if name in ("uniformity", "feature_distillation"):
        pytest.skip(f"{name} is defined on one modality")
    with pytest.raises(ConfigError):
        lookup("objective", name)(["image"], **spec(name)[1])


def test_bad_params_are_config_errors():
    bad = [
        ("clip", {"init_temperature": 0.0}),
        ("clip", {"chunk_size": 0}),
        ("siglip", {"init_scale": -1.0}),
        ("dcl", {"temperature": -0.1}),
        ("cwcl", {"frozen": "audio"}),
        ("cwcl", {"reverse": "both"}),
        ("symile", {"negatives": "n_cubed"}),
        ("m3co", {"target_mode": "overwrite"}),
        ("momentum_itc", {"queue_size": 8}),
        ("clip", {"anchor": "audio"}),
    ]
    for name, params in bad:
        with pytest.raises(ConfigError):
            lookup("objective", name)(PAIR, **params)


def test_feature_distillation_needs_the_teachers_dim():
    batch = batch_for("affinity_distillation", torch.float64)  # teacher rows of dim 4, student D
    with pytest.raises(ConfigError, match="model.embed_dim to 4"):
        make("feature_distillation")(batch)


def test_missing_embedding_is_a_config_error():
    obj = make("clip")
    with pytest.raises(ConfigError, match="text"):
        obj(EmbeddingBatch({"image": torch.zeros(3, 2)}, {}))


def test_clamp_bounds_the_scale():
    obj = make("clip")
    with torch.no_grad():
        obj.scale.log_scale.fill_(9.0)
    obj.clamp_()
    assert float(obj.scale()) == pytest.approx(100.0)
    siglip = make("siglip")
    with torch.no_grad():
        siglip.bias.fill_(-50.0)
    siglip.clamp_()
    assert float(siglip.bias) == -50.0  # the bias is never clamped


def test_combined_objective_weights_and_prefixes():
    clip, unif = make("clip"), make("uniformity")
    combo = CombinedObjective({"clip": clip, "uniformity": unif}, {"clip": 1.0, "uniformity": 0.1})
    batch = batch_for("clip", torch.float64)
    out = combo(batch)
    want = clip(batch).loss + 0.1 * unif(batch).loss
    torch.testing.assert_close(out.loss, want)
    assert "clip/loss" in out.metrics and "uniformity/image" in out.metrics


def test_symile_score():
    obj = make("symile")
    batch = batch_for("symile", torch.float64)
    e = batch.emb
    scores = obj.score({"image": e["image"], "text": e["text"]}, e["audio"][:4])
    want = torch.einsum("bd,bd,kd->bk", e["image"], e["text"], e["audio"][:4])
    torch.testing.assert_close(scores, want, rtol=0, atol=1e-12)
    with pytest.raises(ConfigError):
        obj.score({"video": e["image"]}, e["audio"])
