"""FusionPredictor: training runs, save/load round trip for every fusion, explain(), bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from modalign.errors import CheckpointError, ConfigError, DataError
from modalign.tasks import TaskSpec
from modalign.fusion.predictor import FusionPredictor

TASKS = [TaskSpec("y", classes=(0, 1)), TaskSpec("score", "regression", weight=0.2)]
FUSIONS = {
    "concat": {"hidden": 8},
    "attention": {"d_model": 8, "heads": 2, "layers": 1},
    "multimodn": {"state_dim": 8, "hidden": (8,), "shuffle": True, "state_change_weight": 0.1},
    "lego": {
        "latent_channels": 4,
        "latent_dim": 8,
        "heads": 2,
        "head_dim": 4,
        "tokens": 2,
        "token_dim": 8,
    },
}


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = {"a": rng.normal(size=(n, 4)) + y[:, None], "b": rng.normal(size=(n, 3)) - y[:, None]}
    x["b"][:5] = np.nan  # NaN rows are absent
    labels = {"y": list(y), "score": [float(v) if i % 3 else None for i, v in enumerate(y)]}
    return x, labels


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_fit_predict_save_load_round_trip(fusion, tmp_path):
    x, labels = data()
    m = FusionPredictor(
        {"a": 4, "b": 3},
        TASKS,
        fusion=fusion,
        fusion_kwargs=FUSIONS[fusion],
        feature_dim=8,
        aux_heads=True,
        contrastive_weight=0.1,
        modality_dropout={"a": 0.2},
    )
    hist = m.fit(x, labels, epochs=3, batch_size=16, lr=1e-2)
    assert len(hist) == 3 and np.isfinite(hist[-1]["loss"])
    p = m.predict(x)
    assert p["y"].shape == (40, 2) and np.allclose(p["y"].sum(1), 1, atol=1e-5)
    assert p["score"].shape == (40, 1)
    m.save(tmp_path / "model")
    meta = json.loads((tmp_path / "model" / "config.json").read_text())
    assert meta["format"] == "modalign.fusion_predictor"
    torch.manual_seed(123)
    loaded = FusionPredictor.load(tmp_path / "model")
    q = loaded.predict(x)
    for k in p:
        np.testing.assert_array_equal(p[k], q[k])


def test_all_missing_sample_gets_prior_prediction_and_explain_steps():
    x, labels = data()
    m = FusionPredictor(
        {"a": 4, "b": 3},
        TASKS[:1],
        fusion="multimodn",
        fusion_kwargs=FUSIONS["multimodn"],
        encoder="identity",
    )
    m.fit(x, labels, epochs=5, lr=1e-2)
    none = m.predict({"a": np.full((2, 4), np.nan), "b": np.full((2, 3), np.nan)})["y"]
    # Independent prior: the decoder applied to s0 directly.
    with torch.no_grad():
        prior = torch.softmax(m.heads(m.fusion.s0)["y"], dim=-1).numpy()
    np.testing.assert_allclose(none, np.repeat(prior, 2, axis=0), atol=1e-6)
    steps = m.explain({"a": x["a"][7], "b": None})
    assert [s["step"] for s in steps] == ["prior", "a", "b"]
    assert [s["present"] for s in steps] == [True, True, False]
    np.testing.assert_allclose(steps[0]["probabilities"]["y"], prior[0], atol=1e-6)
    np.testing.assert_allclose(steps[2]["contribution"]["y"], [0, 0], atol=1e-7)
    full = m.predict({"a": x["a"][7:8], "b": np.full((1, 3), np.nan)})["y"][0]
    np.testing.assert_allclose(steps[-1]["probabilities"]["y"], full, atol=1e-6)
    total = np.sum([s["contribution"]["y"] for s in steps], axis=0)
    np.testing.assert_allclose(steps[0]["probabilities"]["y"] + total, full, atol=1e-6)
    assert m.explain({"a": None, "b": None})[-1]["probabilities"] == steps[0]["probabilities"]


def test_explain_needs_multimodn():
    m = FusionPredictor({"a": 4}, TASKS[:1], fusion="concat")
    with pytest.raises(ConfigError, match="multimodn"):
        m.explain({"a": np.zeros(4)})


def test_fit_rejects_unknown_class_with_row_and_column():
    x, labels = data()
    labels["y"][11] = 5
    m = FusionPredictor({"a": 4, "b": 3}, TASKS, fusion="concat")
    with pytest.raises(DataError) as err:
        m.fit(x, labels, epochs=1)
    assert err.value.row == 11 and err.value.column == "y"


def test_load_rejects_foreign_and_missing(tmp_path):
    with pytest.raises(CheckpointError):
        FusionPredictor.load(tmp_path / "nothing")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"format": "other"}')
    (tmp_path / "x" / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a"):
        FusionPredictor.load(tmp_path / "x")


def test_ema_decay_zero_equals_plain_training_and_bad_decay_rejected():
    x, labels = data()
    kw = dict(fusion="concat", fusion_kwargs={"hidden": 8}, feature_dim=8)
    a = FusionPredictor({"a": 4, "b": 3}, TASKS, **kw)
    b = FusionPredictor({"a": 4, "b": 3}, TASKS, **kw)
    b.load_state_dict(a.state_dict())
    a.fit(x, labels, epochs=3, seed=1)
    b.fit(x, labels, epochs=3, seed=1, ema_decay=0.0)  # average of only the latest weights
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(va, vb, msg=ka)
    with pytest.raises(ConfigError):
        a.fit(x, labels, epochs=1, ema_decay=1.0)


def test_ensemble_prediction_is_row_mean_of_fused_and_present_unimodal_heads(tmp_path):
    x, labels = data()  # modality b is NaN (absent) in rows 0-4
    m = FusionPredictor(
        {"a": 4, "b": 3},
        TASKS,
        fusion="concat",
        fusion_kwargs={"hidden": 8},
        feature_dim=8,
        aux_heads=True,
        prediction="ensemble",
    )
    m.fit(x, labels, epochs=5, lr=1e-2)
    got = m.predict(x)
    # Independent definition: row by row, average the fused head and every present modality's
    # own head (encoder -> unimodal head on that modality alone).
    m.prediction = "fused"
    fused = m.predict(x)
    m.prediction = "ensemble"
    with torch.no_grad():
        for i in range(len(labels["y"])):
            for spec in TASKS:
                preds = [fused[spec.name][i]]
                for mod in ("a", "b"):
                    row = torch.as_tensor(x[mod][i : i + 1], dtype=torch.float32)
                    if torch.isnan(row).any():
                        continue
                    z = m.aux[mod](m.encoders[mod](m.scalers[mod](row)))[spec.name]
                    preds.append((torch.softmax(z, -1) if spec.kind == "multiclass" else z)[0].numpy())
                np.testing.assert_allclose(got[spec.name][i], np.mean(preds, axis=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got["y"], fused["y"])  # the option does something
    m.save(tmp_path / "ens")
    np.testing.assert_array_equal(FusionPredictor.load(tmp_path / "ens").predict(x)["y"], got["y"])


def test_input_dropout_zeroes_and_rescales_inputs_in_training_only():
    x, _ = data()
    kw = dict(fusion="concat", fusion_kwargs={"hidden": 8}, encoder="identity")
    m = FusionPredictor({"a": 4, "b": 3}, TASKS, input_dropout=0.5, **kw)
    m.fit_scalers(x)
    a = torch.as_tensor(x["a"], dtype=torch.float32)
    z = (a - m.scalers["a"].shift) / m.scalers["a"].scale  # (B, 4) normalised inputs
    m.train()
    torch.manual_seed(0)
    fa = m({"a": a}).features["a"]
    kept = fa != 0
    assert 0.3 < kept.float().mean() < 0.7  # about half the entries survive
    torch.testing.assert_close(fa[kept], 2.0 * z[kept])  # survivors scaled by 1 / (1 - p)
    m.eval()
    torch.testing.assert_close(m({"a": a}).features["a"], z)


def test_new_options_validated():
    with pytest.raises(ConfigError, match="aux_heads"):
        FusionPredictor({"a": 4}, TASKS, prediction="ensemble")
    with pytest.raises(ConfigError, match="prediction"):
        FusionPredictor({"a": 4}, TASKS, aux_heads=True, prediction="vote")
    with pytest.raises(ConfigError, match="input_dropout"):
        FusionPredictor({"a": 4}, TASKS, input_dropout=1.0)


def _paper_head(x: torch.Tensor, linears: list[torch.nn.Linear]) -> torch.Tensor:
    """M3CoL's head written out (eval mode): Linear-ReLU-(Dropout)-Linear-ReLU-Linear."""
    w = [(lin.weight.detach(), lin.bias.detach()) for lin in linears]
    h = torch.clamp_min(x @ w[0][0].T + w[0][1], 0.0)
    h = torch.clamp_min(h @ w[1][0].T + w[1][1], 0.0)
    return h @ w[2][0].T + w[2][1]


def test_head_depth_two_is_m3col_head_and_round_trips(tmp_path):
    x, labels = data()
    m = FusionPredictor(
        {"a": 4, "b": 3}, TASKS, feature_dim=6, head_hidden=5, head_dropout=0.5, head_depth=2, aux_heads=True
    )
    m.fit(x, labels, epochs=3, lr=1e-2)
    for heads in [m.heads, *m.aux.values()]:
        for spec in TASKS:
            seq = heads.heads[spec.name]
            kinds = [type(layer).__name__ for layer in seq]
            assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
            assert seq[2].p == 0.5 and seq[3].in_features == seq[3].out_features == 5
    m.eval()
    rows = slice(5, 40)  # both modalities present
    xa = torch.as_tensor(x["a"][rows], dtype=torch.float32)
    xb = torch.as_tensor(x["b"][rows], dtype=torch.float32)
    out = m({"a": xa, "b": xb})
    ea, eb = out.features["a"], out.features["b"]
    for spec in TASKS:
        lin = [layer for layer in m.heads.heads[spec.name] if isinstance(layer, torch.nn.Linear)]
        torch.testing.assert_close(out.logits[spec.name], _paper_head(torch.cat([ea, eb], 1), lin))
        lin_a = [layer for layer in m.aux["a"].heads[spec.name] if isinstance(layer, torch.nn.Linear)]
        torch.testing.assert_close(out.aux_logits["a"][spec.name], _paper_head(ea, lin_a))
    m.save(tmp_path / "deep")
    loaded = FusionPredictor.load(tmp_path / "deep")
    assert loaded.head_depth == 2
    np.testing.assert_array_equal(loaded.predict(x)["y"], m.predict(x)["y"])


def test_head_depth_default_keeps_single_hidden_layer_and_is_validated():
    torch.manual_seed(0)
    a = FusionPredictor({"a": 4}, TASKS, head_hidden=5)
    torch.manual_seed(0)
    b = FusionPredictor({"a": 4}, TASKS, head_hidden=5, head_depth=1)
    assert [type(layer).__name__ for layer in a.heads.heads["y"]] == ["Linear", "ReLU", "Dropout", "Linear"]
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    with pytest.raises(ConfigError, match="head_depth"):
        FusionPredictor({"a": 4}, TASKS, head_hidden=5, head_depth=0)
    with pytest.raises(ConfigError, match="head_hidden"):
        FusionPredictor({"a": 4}, TASKS, head_depth=2)
