"""Missing-modality invariants of every fusion module, checked against per-sample processing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from modalign.fusion import build_fusion
from modalign.registry import names

DIMS = {"a": 5, "b": 3, "c": 4}
LEGO = {"latent_channels": 4, "latent_dim": 8, "heads": 2, "head_dim": 4, "tokens": 2, "token_dim": 8}
CONFIGS = {
    "concat": {"hidden": 16},
    "attention": {"d_model": 16, "heads": 2, "layers": 2},
    "multimodn": {"state_dim": 8, "hidden": (8,), "state_change_weight": 0.5},
    "lego": LEGO,
    "lego_stack": {"mode": "stack", **LEGO},
}
ALL = list(CONFIGS)


def make(key: str, seed: int = 0):
    torch.manual_seed(seed)
    name = "lego" if key.startswith("lego") else key
    return build_fusion(name, DIMS, **CONFIGS[key]).eval()


def batch(b: int = 7, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(b, d, generator=g, dtype=torch.float64).float() for m, d in DIMS.items()}
    present = {m: torch.rand(b, generator=g) > 0.4 for m in DIMS}
    present["a"][0] = present["b"][0] = present["c"][0] = False  # an all-missing row
    present["a"][1] = present["b"][1] = present["c"][1] = True  # a complete row
    # Absent rows hold garbage, including NaN: it must never reach the output.
    for m in DIMS:
        feats[m][~present[m]] = float("nan")
    return feats, present


def test_every_registered_fusion_is_covered():
    assert set(names("fusion")) == {"concat", "attention", "multimodn", "lego"}


@pytest.mark.parametrize("key", ALL)
def test_batch_equals_each_sample_alone_with_only_present_modalities(key):
    f = make(key)
    feats, present = batch()
    with torch.no_grad():
        out = f(feats, present).fused
        for i in range(out.shape[0]):
            alone = {m: feats[m][i : i + 1] for m in DIMS if bool(present[m][i])}
            ref = f(alone, {}).fused if alone else f({}, {"a": torch.zeros(1, dtype=torch.bool)}).fused
            torch.testing.assert_close(out[i], ref[0], atol=1e-5, rtol=1e-5)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("key", ALL)
def test_present_masks_change_nothing_for_complete_batches(key):
    f = make(key)
    feats = {m: torch.randn(6, d) for m, d in DIMS.items()}
    ones = {m: torch.ones(6, dtype=torch.bool) for m in DIMS}
    with torch.no_grad():
        torch.testing.assert_close(f(feats, ones).fused, f(feats, {}).fused, atol=0, rtol=0)


@pytest.mark.parametrize("key", ALL)
def test_nan_features_count_as_missing(key):
    f = make(key)
    feats = {m: torch.randn(4, d) for m, d in DIMS.items()}
    nan_feats = {m: v.clone() for m, v in feats.items()}
    nan_feats["b"][2, 1] = float("nan")  # one NaN makes the whole row of b absent
    masked = {"b": torch.tensor([True, True, False, True])}
    with torch.no_grad():
        torch.testing.assert_close(f(nan_feats, {}).fused, f(feats, masked).fused)


@pytest.mark.parametrize("key", ALL)
def test_gradients_are_finite_with_nan_placeholders(key):
    f = make(key).train()
    feats, present = batch()
    out = f(feats, present)
    loss = out.fused.pow(2).sum() + out.regularizer
    loss.backward()
    grads = [p.grad for p in f.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("key", ALL)
def test_module_round_trip_through_config_and_safetensors(key, tmp_path):
    from safetensors.torch import load_file, save_file

    f = make(key, seed=3)
    save_file({k: v.contiguous() for k, v in f.state_dict().items()}, str(tmp_path / "w.safetensors"))
    cfg = f.config()
    torch.manual_seed(99)  # a different init, overwritten by the loaded weights
    g = type(f)(**cfg).eval()
    g.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    feats, present = batch()
    with torch.no_grad():
        torch.testing.assert_close(f(feats, present).fused, g(feats, present).fused, atol=0, rtol=0)


def test_all_missing_multimodn_keeps_initial_state():
    f = make("multimodn")
    out = f({}, {m: torch.zeros(3, dtype=torch.bool) for m in DIMS})
    for t in range(out.states.shape[0]):
        torch.testing.assert_close(out.states[t], f.s0.expand(3, -1))
    assert out.step_mask[1:].sum() == 0 and out.step_mask[0].all()
    assert float(out.regularizer.detach()) == 0.0


def test_all_missing_concat_is_the_learned_missing_vectors():
    f = make("concat")
    out = f({}, {"a": torch.zeros(2, dtype=torch.bool)}).fused
    # Independent recomputation: concatenate the missing vectors, apply Linear + ReLU by hand.
    lin = f.mlp[0]
    cat = torch.cat([f.missing[m] for m in DIMS])
    ref = torch.relu(cat @ lin.weight.T + lin.bias)
    torch.testing.assert_close(out, ref.expand(2, -1))


def test_all_missing_attention_is_a_constant_prior():
    f = make("attention")
    feats, present = batch()
    with torch.no_grad():
        out = f(feats, present).fused
        prior = f({}, {"a": torch.zeros(1, dtype=torch.bool)}).fused
    torch.testing.assert_close(out[0], prior[0], atol=1e-5, rtol=1e-5)  # batch of 7 vs 1, float32
    assert not torch.allclose(out[1], prior[0])


def test_all_missing_lego_merge_is_layernorm_bias():
    f = make("lego")
    out = f({}, {"a": torch.zeros(2, dtype=torch.bool)}).fused
    # Sum over no blocks is the zero latent; LayerNorm of zeros returns its bias.
    torch.testing.assert_close(out, f.norm.bias.expand(2, -1))


def test_unknown_modality_is_a_data_error():
    from modalign.errors import DataError

    with pytest.raises(DataError, match="unknown modalities"):
        make("concat")({"zzz": torch.randn(2, 5)}, {})


def test_wrong_width_is_a_data_error():
    from modalign.errors import DataError

    with pytest.raises(DataError, match="shape"):
        make("concat")({"a": torch.randn(2, 6)}, {})


def test_numpy_free_of_side_effects():
    # forward never mutates its inputs (STYLE rule 11).
    f = make("multimodn")
    feats, present = batch()
    before = {m: v.clone() for m, v in feats.items()}
    pbefore = {m: v.clone() for m, v in present.items()}
    f(feats, present)
    for m in DIMS:
        assert np.array_equal(before[m].numpy(), feats[m].numpy(), equal_nan=True)
        assert torch.equal(pbefore[m], present[m])
