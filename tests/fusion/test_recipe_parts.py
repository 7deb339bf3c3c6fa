"""Each piece of the prediction recipes, against a definition written here.

Scaling as a transform, heads of any depth, ensemble prediction, fusion of unnormalised features,
Adam with L2 decay, full-batch order, the weight average and M3Co's switch to Soft-CLIP.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import modalign.fusion  # noqa: F401  (registers the fusion modules)
import modalign.objectives  # noqa: F401  (registers the objectives)
from modalign.config import TrainerConfig
from modalign.data.dataset import ModalitySource, SampleSet
from modalign.data.transforms.tabular import TabularTransform
from modalign.encoders import build_encoder
from modalign.fusion.heads import TaskHeads
from modalign.model import MultimodalModel
from modalign.model_specs import FusionSpec, ModalitySpec, Prediction
from modalign.objectives import CombinedObjective
from modalign.registry import lookup
from modalign.tasks import TaskSpec
from modalign.training.ema import WeightAverage
from modalign.training.trainer import Trainer

ROWS = [[1.0, 10.0, 5.0], [3.0, 10.0, -1.0], [2.0, 10.0, 2.0], [6.0, 10.0, 0.0]]


@pytest.mark.parametrize("scaling", ["standard", "minmax", "none"])
def test_tabular_scaling_uses_training_statistics(scaling):
    t = TabularTransform(scaling=scaling, missing_flags=False)
    t.fit(ROWS)
    x = np.array(ROWS)
    if scaling == "standard":
        shift, scale = x.mean(0), x.std(0)
    elif scaling == "minmax":
        shift, scale = x.min(0), x.max(0) - x.min(0)
    else:
        shift, scale = np.zeros(3), np.ones(3)
    scale = np.where(scale > 0, scale, 1.0)  # a constant feature is only shifted
    new = [7.0, 10.0, float("nan")]
    got = t.load(new, Path("."))
    want = [(7.0 - shift[0]) / scale[0], (10.0 - shift[1]) / scale[1], 0.0]  # missing -> 0, no flags
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert t.placeholder().shape == (3,)


def test_missing_flags_follow_the_values():
    t = TabularTransform()
    t.fit(ROWS)
    got = t.load([1.0, float("nan"), 5.0], Path("."))
    assert got.shape == (6,) and got[3:].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_task_heads_of_any_depth(depth):
    torch.manual_seed(0)
    task = TaskSpec("y", classes=(0, 1, 2))
    heads = TaskHeads(4, [task], hidden=5, dropout=0.5, depth=depth).eval()
    layers = [m for m in heads.heads["y"] if isinstance(m, nn.Linear)]
    assert len(layers) == depth + 1
    h = torch.randn(7, 4)
    want = h
    for lin in layers[:-1]:  # Linear-ReLU (dropout only after the first: identity in eval)
        want = torch.relu(want @ lin.weight.T + lin.bias)
    want = want @ layers[-1].weight.T + layers[-1].bias
    torch.testing.assert_close(heads(h)["y"], want)
    with pytest.raises(Exception, match="depth"):
        TaskHeads(4, [task], hidden=None, depth=2)


def _model(
    prediction: str = "fused", fusion_input: str = "embedding", encoder: str = "mlp"
) -> MultimodalModel:
    task = TaskSpec("y", classes=(0, 1))
    specs = []
    for name in ("a", "b"):
        t = TabularTransform(missing_flags=False)
        t.fit([[0.0, 1.0, 2.0], [1.0, 0.0, 4.0]])
        kw = {"n_numeric": 3, "missing_flags": False}
        if encoder == "mlp":
            kw |= {"hidden": 6, "output_dim": 3}
        specs.append(ModalitySpec(name, "tabular", name, encoder, kw, t))
    spec = FusionSpec("concat", {}, (task,), aux_heads=True, input=fusion_input, prediction=prediction)
    torch.manual_seed(0)
    return MultimodalModel(specs, 3, "none", spec).eval()


def test_ensemble_prediction_averages_fused_and_present_unimodal_heads():
    model = _model("ensemble")
    logits = {"y": torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])}
    aux = {"a": {"y": torch.tensor([[3.0, 0.0]] * 3)}, "b": {"y": torch.tensor([[0.0, 3.0]] * 3)}}
    present = {"a": torch.tensor([True, True, False]), "b": torch.tensor([True, False, False])}
    got = model.task_probabilities(Prediction(logits, None, aux, None), present)["y"]  # type: ignore[arg-type]
    sm = lambda z: torch.softmax(z, dim=-1)  # noqa: E731
    want = torch.stack(
        [
            (sm(logits["y"][0]) + sm(aux["a"]["y"][0]) + sm(aux["b"]["y"][0])) / 3,
            (sm(logits["y"][1]) + sm(aux["a"]["y"][1])) / 2,
            sm(logits["y"][2]),  # nothing present: the fused (prior) prediction alone
        ]
    )
    torch.testing.assert_close(got, want)
    fused = _model("fused").task_probabilities(Prediction(logits, None, aux, None), present)["y"]  # type: ignore[arg-type]
    torch.testing.assert_close(fused, sm(logits["y"]))


def test_fusion_on_features_sees_the_scaled_values_themselves():
    model = _model(fusion_input="features", encoder="identity")
    x = {"a": [[0.5, 0.5, 3.0]], "b": [[1.0, 0.0, 2.0]]}
    seen = {}
    model.fusion.register_forward_hook(lambda mod, args, out: seen.update(args[0]))
    model.predict(x)
    for m in ("a", "b"):
        t = model.specs[m].transform
        want = [(v - mu) / sd for v, mu, sd in zip(x[m][0], t.mean, t.std, strict=True)]  # type: ignore[attr-defined]
        np.testing.assert_allclose(seen[m][0].numpy(), want, rtol=1e-6)  # unnormalised: not unit rows
    assert not math.isclose(float(seen["a"][0].norm()), 1.0, rel_tol=1e-3)


def _trainer(tmp_path: Path, **cfg) -> tuple[Trainer, MultimodalModel]:
    model = _model()
    t = model.specs["a"].transform
    n = 6
    data = {m: [torch.tensor([float(i), 1.0, 2.0]) for i in range(n)] for m in ("a", "b")}
    samples = SampleSet(ids=[str(i) for i in range(n)], rows=list(range(n)), data=data)  # type: ignore[arg-type]
    sources = [ModalitySource(m, m, t) for m in ("a", "b")]
    objective = CombinedObjective({"clip": lookup("objective", "clip")(["a", "b"])}, {"clip": 1.0})
    return Trainer(
        model, objective, samples, sources, tmp_path, TrainerConfig(**cfg), show_progress=False
    ), model


def test_full_batch_takes_every_row_in_data_order(tmp_path):
    trainer, _ = _trainer(tmp_path, batch_size="full")
    orders = [trainer._epoch_order(e).tolist() for e in range(3)]
    assert orders == [list(range(6))] * 3 and trainer.batch_size == 6
    shuffled, _ = _trainer(tmp_path, batch_size=4)
    assert sorted(shuffled._epoch_order(0).tolist()) == list(range(6))


def test_adam_decays_every_parameter_and_adamw_only_matrices(tmp_path):
    adam, model = _trainer(tmp_path, optimizer="adam", weight_decay=0.1)
    assert type(adam.optimizer) is torch.optim.Adam
    (group,) = adam.optimizer.param_groups
    assert group["weight_decay"] == 0.1 and len(group["params"]) == len(adam.params)
    adamw, _ = _trainer(tmp_path, optimizer="adamw", weight_decay=0.1)
    assert type(adamw.optimizer) is torch.optim.AdamW
    decayed = adamw.optimizer.param_groups[0]
    assert decayed["weight_decay"] == 0.1 and all(p.ndim >= 2 for p in decayed["params"])


def test_weight_average_is_the_exponential_moving_average():
    torch.manual_seed(0)
    net = nn.Linear(3, 2)
    ema = WeightAverage(net, decay=0.9)
    want = {k: p.detach().clone() for k, p in net.named_parameters()}
    for _ in range(4):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn_like(p))
        ema.update(net)
        for k, p in net.named_parameters():
            want[k] = 0.9 * want[k] + 0.1 * p.detach()
    ema.copy_to(net)
    for k, p in net.named_parameters():
        torch.testing.assert_close(p, want[k])


def test_trainer_saves_the_weight_average(tmp_path):
    trainer, model = _trainer(tmp_path, max_steps=3, batch_size="full", ema_decay=0.5, warmup_steps=0)
    seen: list[dict[str, torch.Tensor]] = [{k: p.detach().clone() for k, p in model.named_parameters()}]
    trainer.on_step = lambda step, metrics: seen.append(
        {k: p.detach().clone() for k, p in model.named_parameters()}
    )
    trainer.fit()
    for k, p in model.named_parameters():
        want = seen[0][k]
        for w in seen[1:]:
            want = 0.5 * want + 0.5 * w[k]
        torch.testing.assert_close(p.detach(), want)


@pytest.mark.parametrize(
    ("fraction", "total", "mixing"), [(0.33, 300, 99), (0.33, 12, 4), (0.5, 10, 5), (0.0, 5, 0)]
)
def test_m3co_switches_to_soft_clip_after_a_fraction_of_training(fraction, total, mixing):
    obj = lookup("objective", "m3co")(["a", "b"], mixup_fraction=fraction, total_steps=total)
    # the definition: M3Co on the steps s with s / total < fraction
    assert obj.mixup_steps == sum(1 for s in range(total) if s / total < fraction) == mixing


def test_encoder_for_raw_features_refuses_categories():
    with pytest.raises(Exception, match="numeric"):
        build_encoder("identity", {"n_numeric": 2, "cardinalities": [3]})
