"""Cross-method identities and properties from METHODS.md §15, and masked == deleted rows."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modalign.objectives import functional as fn

F64 = torch.float64


def unit(*shape, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=F64), dim=-1)


def same(x, y, tol=1e-12):
    torch.testing.assert_close(x, torch.as_tensor(y, dtype=x.dtype), rtol=tol, atol=tol)


def test_cwcl_identity_weights_is_twice_clip():
    # Antipodal frozen rows give w_01 = 0, i.e. W = I: each direction is an InfoNCE direction.
    a, b = unit(2, 4, seed=0), unit(2, 4, seed=1)
    u = torch.stack([a[0], -a[0]])
    same(fn.cwcl(a, b, u, 12.0), 2 * fn.info_nce(a, b, 12.0))


def test_albef_no_momentum_no_queue_is_infonce():
    a, b = unit(6, 5, seed=2), unit(6, 5, seed=3)
    same(fn.momentum_itc(a, b, a, b, 0.07, alpha=0.0), fn.info_nce(a, b, 1 / 0.07))


def test_albef_ids_make_all_captions_positive():
    a, b = unit(4, 5, seed=4), unit(4, 5, seed=5)
    ids = torch.tensor([0, 0, 1, 2])
    pos = ids[:, None] == ids[None, :]
    same(fn.momentum_itc(a, b, a, b, 0.1, alpha=0.0, ids=ids), fn.info_nce(a, b, 10.0, positives=pos))


def test_m3co_without_mixing_is_infonce():
    a, b = torch.randn(7, 5, dtype=F64), unit(7, 5, seed=6)
    perm = torch.randperm(7)
    loss = fn.m3co(a, b, perm=perm, betas=torch.ones(7, dtype=F64), temperature=0.1)
    same(loss, fn.info_nce(F.normalize(a, dim=1), b, 10.0))


def test_m3co_targets_add_vs_assign():
    perm = torch.tensor([0, 2, 1, 3])  # fixed points 0 and 3
    betas = torch.tensor([0.3, 0.6, 1.0, 1.0], dtype=F64)
    add = fn.m3co_targets(perm, betas)
    same(add.sum(1), torch.ones(4, dtype=F64))
    ref = fn.m3co_targets(perm, betas, target_mode="assign")
    same(ref.sum(1), torch.tensor([0.7, 1.0, 1.0, 0.0], dtype=F64))  # the reference's bug


def test_m2mix_without_mix_weight_is_clip():
    a, b = unit(6, 5, seed=7), unit(6, 5, seed=8)
    same(fn.m2mix(a, b, 0.4, 0.01, 0.07, mix_weight=0.0), fn.info_nce(a, b, 100.0))


def test_symile_two_modalities_n_squared_is_infonce():
    a, b = unit(6, 5, seed=9), unit(6, 5, seed=10)
    same(fn.symile([a, b], 8.0, negatives="n_squared"), fn.info_nce(a, b, 8.0))
    same(fn.symile([a, b], 8.0, negatives="n"), fn.info_nce(a, b, 8.0))


def test_symile_invariant_to_modality_order():
    reps = [unit(5, 4, seed=11 + k) for k in range(3)]
    ref = fn.symile(reps, 5.0, negatives="n_squared")
    same(fn.symile(reps[::-1], 5.0, negatives="n_squared"), ref)
    same(fn.symile([reps[1], reps[0], reps[2]], 5.0, negatives="n_squared"), ref)


def test_dcl_removes_the_positive_from_the_denominator():
    # Per row: InfoNCE_i − DCL_i = log(1 + e^{Z_ii}/Σ_{j≠i} e^{Z_ij}) > 0.
    a, b = unit(8, 6, seed=14), unit(8, 6, seed=15)
    tau = 0.2
    z = a @ b.T / tau
    eye = torch.eye(8, dtype=torch.bool)
    gap = 0.0
    for logits in (z, z.T):
        neg = torch.logsumexp(logits.masked_fill(eye, float("-inf")), 1)
        gap = gap + 0.5 * torch.log1p(torch.exp(logits.diagonal() - neg)).mean()
    diff = fn.info_nce(a, b, 1 / tau) - fn.dcl(a, b, tau)
    same(diff, gap)
    assert float(diff) > 0


def test_affinity_teacher_equals_student():
    a, b = unit(6, 5, seed=16).requires_grad_(), unit(6, 5, seed=17).requires_grad_()
    loss = fn.affinity_distillation(a, b, a.detach(), b.detach(), 20.0, 20.0)
    logits = 20.0 * a.detach() @ b.detach().T
    entropy = 0.0
    for z in (logits, logits.T):
        p = torch.softmax(z, 1)
        entropy = entropy - 0.5 * (p * torch.log_softmax(z, 1)).sum(1).mean()
    same(loss, entropy)
    for g in torch.autograd.grad(loss, [a, b]):
        assert float(g.abs().max()) < 1e-12


def test_slerp_properties():
    a, b = unit(5, 4, seed=18), unit(5, 4, seed=19)
    theta = torch.acos((a * b).sum(1))
    for lam in (0.0, 0.3, 1.0):
        m = fn.slerp(a, b, lam)
        same(m.norm(dim=1), torch.ones(5, dtype=F64), 1e-9)
        same(torch.acos((m * a).sum(1).clamp(-1, 1)), (1 - lam) * theta, 1e-6)
    same(fn.slerp(a, b, 1.0), a, 1e-9)
    same(fn.slerp(a, b, 0.0), b, 1e-9)
    # Identical and antipodal rows: no NaN.
    assert torch.isfinite(fn.slerp(a, a, 0.3)).all()
    assert torch.isfinite(fn.slerp(a, -a, 0.3)).all()


def test_geometry_hand_cases():
    a = unit(5, 3, seed=20)
    same(fn.alignment(a, a), 0.0)
    same(fn.alignment(a[:1], -a[:1]), 4.0)
    # Regular simplex (3 points at 120° on a circle) beats random 3-point configurations.
    angles = torch.tensor([0.0, 2 * math.pi / 3, 4 * math.pi / 3], dtype=F64)
    simplex = torch.stack([angles.cos(), angles.sin()], 1)
    best = float(fn.uniformity(simplex))
    for seed in range(20):
        assert float(fn.uniformity(unit(3, 2, seed=100 + seed))) >= best - 1e-12


def test_albef_queue_invariants():
    from modalign.objectives.distill import MomentumItcObjective

    obj = MomentumItcObjective(["x", "y"], queue_size=5, embed_dim=3, warmup_steps=4, alpha=0.4)
    assert obj.current_alpha() == 0.0
    obj.clamp_()
    assert obj.current_alpha() == pytest.approx(0.1)
    for _ in range(5):
        obj.clamp_()
    assert obj.current_alpha() == pytest.approx(0.4)
    from modalign.types import EmbeddingBatch

    for step, rows in enumerate((3, 3, 1)):
        x = F.normalize(torch.full((rows, 3), float(step + 1)) + torch.arange(3.0), dim=1)
        obj(EmbeddingBatch({"x": x, "y": x}, {}))
    # 3 + 3 + 1 rows into 5 slots: the second batch wraps into slot 0, the third lands in slot 1.
    assert int(obj.queue_ptr) == (3 + 3 + 1) % 5
    third = F.normalize(torch.full((1, 3), 3.0) + torch.arange(3.0), dim=1)
    same(obj.queue_a[1:2].double(), third.double(), 1e-7)
    obj.eval()
    before = obj.queue_a.clone()
    obj(EmbeddingBatch({"x": third, "y": third}, {}))
    assert torch.equal(before, obj.queue_a)  # no enqueue in eval mode


# Every functional loss with a present mask equals the loss on the batch with those rows deleted.
CASES = {
    "info_nce": lambda a, b, c, p: fn.info_nce(a, b, 9.0, present=p),
    "info_nce_tiled": lambda a, b, c, p: fn.info_nce(a, b, 9.0, present=p, chunk_size=3),
    "siglip": lambda a, b, c, p: fn.siglip(a, b, 9.0, -2.0, present=p),
    "siglip_tiled": lambda a, b, c, p: fn.siglip(a, b, 9.0, -2.0, present=p, chunk_size=2),
    "dclw_intra": lambda a, b, c, p: fn.dcl(a, b, 0.3, weighted=True, intra_modal_negatives=True, present=p),
    "cwcl": lambda a, b, c, p: fn.cwcl(a, b, c, 9.0, present=p),
    "symile": lambda a, b, c, p: fn.symile([a, b, c], 9.0, negatives="n_squared", present=p),
    "soft_clip": lambda a, b, c, p: fn.soft_clip(a, b, present=p),
    "m2mix": lambda a, b, c, p: fn.m2mix(a, b, 0.3, present=p),
    "uniformity": lambda a, b, c, p: fn.uniformity(a, present=p),
    "alignment": lambda a, b, c, p: fn.alignment(a, b, present=p),
    "cross_uniformity": lambda a, b, c, p: fn.cross_uniformity(a, b, present=p),
    "affinity": lambda a, b, c, p: fn.affinity_distillation(a, b, c, a, 9.0, 20.0, present=p),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_masked_equals_deleted(name):
    a, b, c = unit(9, 5, seed=30), unit(9, 5, seed=31), unit(9, 5, seed=32)
    present = torch.tensor([1, 0, 1, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    garbage = torch.full((9, 5), 1e3, dtype=F64)  # absent rows hold junk: must not matter
    mask = present[:, None]
    masked = CASES[name](
        torch.where(mask, a, garbage),
        torch.where(mask, b, garbage),
        torch.where(mask, c, garbage),
        present,
    )
    deleted = CASES[name](a[present], b[present], c[present], None)
    same(masked, deleted)


def test_m3co_masked_equals_deleted():
    a, b = unit(9, 5, seed=33), unit(9, 5, seed=34)
    present = torch.tensor([1, 1, 0, 1, 0, 1, 1, 1, 1], dtype=torch.bool)
    perm = torch.randperm(7)
    betas = torch.rand(7, dtype=F64)
    masked = fn.m3co(a, b, perm=perm, betas=betas, present=present)
    same(masked, fn.m3co(a[present], b[present], perm=perm, betas=betas))
