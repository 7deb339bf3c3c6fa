"""MultiModN order/regulariser/loss semantics and task-head label handling, vs naive loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modalign.errors import ConfigError, DataError
from modalign.fusion import TaskHeads, build_fusion
from modalign.fusion.heads import multistep_task_loss, task_loss
from modalign.tasks import TaskSpec, encode_targets, infer_classes

DIMS = {"a": 3, "b": 2, "c": 4}


def mmn(**kw):
    torch.manual_seed(0)
    return build_fusion("multimodn", DIMS, state_dim=6, hidden=(5,), **kw)


def naive_states(f, feats, present, order):
    """One sample at a time, one step at a time, in plain Python."""
    b = next(iter(feats.values())).shape[0]
    rows = []
    for i in range(b):
        s = f.s0[0]
        seq = [s]
        for m in order:
            if bool(present[m][i]):
                enc = f.encoders[m]
                h = enc.body(feats[m][i : i + 1])
                s = enc.out(torch.cat([h, s[None]], dim=1))[0]
            seq.append(s)
        rows.append(torch.stack(seq))
    return torch.stack(rows, dim=1)  # (E+1, B, k)


def test_states_match_a_naive_loop_with_explicit_order():
    f = mmn().eval()
    g = torch.Generator().manual_seed(0)
    feats = {m: torch.randn(5, d, generator=g) for m, d in DIMS.items()}
    present = {m: torch.rand(5, generator=g) > 0.5 for m in DIMS}
    order = ("c", "a", "b")
    with torch.no_grad():
        out = f(feats, present, order=order)
        ref = naive_states(f, feats, present, order)
    assert out.order == order
    # float32, batch of 5 vs one row at a time: summation order differs by a few ulp
    torch.testing.assert_close(out.states, ref, atol=1e-5, rtol=1e-5)
    for t, m in enumerate(order, start=1):
        assert torch.equal(out.step_mask[t], present[m])


def test_configured_order_and_shuffle():
    f = mmn(order=("b", "c", "a"))
    x = {m: torch.randn(2, d) for m, d in DIMS.items()}
    f.eval()
    assert f(x, {}).order == ("b", "c", "a")
    s = mmn(shuffle=True)
    s.eval()
    assert s(x, {}).order == ("a", "b", "c")  # evaluation never shuffles
    s.train()
    torch.manual_seed(1)
    orders = {s(x, {}).order for _ in range(40)}
    assert len(orders) > 3 and all(sorted(o) == ["a", "b", "c"] for o in orders)
    with pytest.raises(ConfigError):
        mmn(order=("a", "b"))


def test_state_change_regulariser_matches_definition():
    f = mmn(state_change_weight=0.3)
    g = torch.Generator().manual_seed(2)
    feats = {m: torch.randn(6, d, generator=g) for m, d in DIMS.items()}
    present = {m: torch.rand(6, generator=g) > 0.3 for m in DIMS}
    with torch.no_grad():
        out = f(feats, present)
    num, cnt = 0.0, 0
    for t in range(1, out.states.shape[0]):
        for i in range(6):
            if bool(out.step_mask[t, i]):
                num += float(((out.states[t, i] - out.states[t - 1, i]) ** 2).mean())
                cnt += 1
    assert math.isclose(float(out.regularizer.detach()), 0.3 * num / cnt, rel_tol=1e-5)


def test_reference_compat_skips_the_whole_batch():
    f = mmn(reference_compat=True)
    feats = {m: torch.randn(3, d) for m, d in DIMS.items()}
    present = {"a": torch.tensor([True, False, True])}
    out = f(feats, present)
    assert not out.step_mask[1].any()  # a skipped for all rows
    torch.testing.assert_close(out.states[1], out.states[0])
    assert out.step_mask[2].all()


def test_multistep_loss_equals_loss_over_evaluated_entries():
    tasks = [TaskSpec("y", classes=(0, 1, 2)), TaskSpec("r", "regression", weight=0.5)]
    g = torch.Generator().manual_seed(3)
    s, b = 4, 5
    logits = {"y": torch.randn(s, b, 3, generator=g), "r": torch.randn(s, b, 1, generator=g)}
    step_mask = torch.rand(s, b, generator=g) > 0.4
    step_mask[0] = True
    targets = encode_targets(tasks, {"y": [0, 2, None, 1, 1], "r": [0.5, None, 1.0, -2.0, 3.0]})
    out = multistep_task_loss(tasks, logits, step_mask, targets)
    ys, rs = [0, 2, None, 1, 1], [0.5, None, 1.0, -2.0, 3.0]
    ce, ncl, se, nr = 0.0, 0, 0.0, 0
    for t in range(s):
        for i in range(b):
            if not bool(step_mask[t, i]):
                continue
            if ys[i] is not None:
                z = logits["y"][t, i]
                ce += float(torch.logsumexp(z, 0) - z[ys[i]])
                ncl += 1
            if rs[i] is not None:
                se += (float(logits["r"][t, i, 0]) - rs[i]) ** 2
                nr += 1
    assert math.isclose(float(out.loss), ce / ncl + 0.5 * se / nr, rel_tol=1e-5)


def test_task_loss_masks_missing_labels_like_the_reduced_batch():
    tasks = [TaskSpec("y", classes=("cat", "dog"))]
    logits = {"y": torch.randn(4, 2)}
    targets = encode_targets(tasks, {"y": ["dog", None, "cat", float("nan")]})
    got = task_loss(tasks, logits, targets).loss
    ref = F.cross_entropy(logits["y"][[0, 2]], torch.tensor([1, 0]))
    torch.testing.assert_close(got, ref)


def test_multilabel_targets_and_loss():
    tasks = [TaskSpec("tags", "multilabel", classes=("x", "y", "z"))]
    targets = encode_targets(tasks, {"tags": [["x", "z"], [], None]})
    assert targets["tags"].y[0].tolist() == [1.0, 0.0, 1.0]
    assert targets["tags"].mask.tolist() == [True, True, False]
    logits = {"tags": torch.randn(3, 3)}
    got = task_loss(tasks, logits, targets).loss
    ref = F.binary_cross_entropy_with_logits(logits["tags"][:2], targets["tags"].y[:2])
    torch.testing.assert_close(got, ref)


def test_label_outside_known_classes_names_row_and_column():
    tasks = [TaskSpec("diagnosis", classes=(0, 1), column="dx")]
    with pytest.raises(DataError) as err:
        encode_targets(tasks, {"dx": [0, 1, 1, 7]}, row_offset=100)
    assert err.value.row == 103 and err.value.column == "dx"
    assert "row 103" in str(err.value) and "'dx'" in str(err.value) and "7" in str(err.value)


def test_string_numbers_match_integer_classes():
    t = encode_targets([TaskSpec("y", classes=(0, 1))], {"y": ["1", 0.0, 1]})
    assert t["y"].y.tolist() == [1, 0, 1]


def test_regression_label_must_be_numeric():
    with pytest.raises(DataError) as err:
        encode_targets([TaskSpec("age", "regression")], {"age": [1.0, "old"]})
    assert err.value.row == 1 and err.value.column == "age"


def test_infer_classes_and_head_shapes():
    spec = infer_classes(TaskSpec("y"), ["b", None, "a", "b"])
    assert spec.classes == ("a", "b")
    heads = TaskHeads(7, [spec, TaskSpec("r", "regression")], hidden=4).eval()
    h = torch.randn(3, 5, 7)  # (S, B, H) states
    out = heads(h)
    assert out["y"].shape == (3, 5, 2) and out["r"].shape == (3, 5, 1)
    # definition: Linear-ReLU-(Dropout)-Linear on the last dim, every (step, row) on its own
    for name in ("y", "r"):
        first, last = heads.heads[name][0], heads.heads[name][-1]
        ref = torch.relu(h @ first.weight.T + first.bias) @ last.weight.T + last.bias
        torch.testing.assert_close(out[name], ref)
    with pytest.raises(ConfigError):
        TaskSpec("y", kind="ordinal")
