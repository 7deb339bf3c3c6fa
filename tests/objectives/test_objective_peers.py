"""Optional comparisons with the peer libraries (skipped when they are not installed).

Install: ``pip install --no-deps symile==0.1.0 lightly==1.6.0 open-clip-torch==3.3.0``. lightly's
and open_clip's package ``__init__`` import torchvision, so their loss modules are loaded by file.
"""

from __future__ import annotations

import importlib.util
import math
from importlib import metadata
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from modalign.objectives import functional as fn


def _load_by_path(dist: str, relative: str, module_name: str):
    try:
        files = metadata.distribution(dist).locate_file("")
    except metadata.PackageNotFoundError:
        pytest.skip(f"{dist} not installed")
    path = Path(str(files)) / relative
    if not path.exists():
        pytest.skip(f"{path} missing")
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def unit(*shape, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


@pytest.fixture(scope="module")
def open_clip_loss():
    return _load_by_path("open-clip-torch", "open_clip/loss.py", "_peer_open_clip_loss")


@pytest.fixture(scope="module")
def lightly_dcl():
    try:
        version = metadata.version("lightly")
    except metadata.PackageNotFoundError:
        pytest.skip("lightly not installed")
    major, minor = (int(x) for x in version.split(".")[:2])
    if (major, minor) < (1, 6):
        pytest.skip(f"lightly {version} computes the older two-LSE DCL; need >= 1.6")
    return _load_by_path("lightly", "lightly/loss/dcl_loss.py", "_peer_lightly_dcl")


def test_open_clip_clip_and_siglip(open_clip_loss):
    a, b = unit(11, 7, seed=0), unit(11, 7, seed=1)
    for chunk in (None, 4):
        ref = open_clip_loss.ClipLoss()(a, b, torch.tensor(12.0, dtype=torch.float64))
        torch.testing.assert_close(fn.info_nce(a, b, 12.0, chunk_size=chunk), ref, rtol=0, atol=1e-12)
        s, t = torch.tensor(10.0, dtype=torch.float64), torch.tensor(-10.0, dtype=torch.float64)
        ref = open_clip_loss.SigLipLoss()(a, b, s, t)
        got = fn.siglip(a, b, s, t, chunk_size=chunk)
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_open_clip_distill_term(open_clip_loss):
    a, b, ta, tb = unit(9, 6, seed=2), unit(9, 6, seed=3), unit(9, 4, seed=4), unit(9, 4, seed=5)
    s_student = torch.tensor(14.0, dtype=torch.float64)
    s_teacher = torch.tensor(50.0, dtype=torch.float64)
    out = open_clip_loss.DistillClipLoss()(a, b, s_student, ta, tb, s_teacher, output_dict=True)
    got = fn.affinity_distillation(a, b, ta, tb, 14.0, 50.0)
    torch.testing.assert_close(got, out["distill_loss"], rtol=0, atol=1e-12)
    # CWCL with W = I (antipodal frozen rows, B = 2) is twice the ClipLoss.
    a2, b2 = a[:2], b[:2]
    u = torch.stack([a2[0], -a2[0]])
    ref = open_clip_loss.ClipLoss()(a2, b2, torch.tensor(14.0, dtype=torch.float64))
    torch.testing.assert_close(fn.cwcl(a2, b2, u, 14.0), 2 * ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
def test_lightly_dcl(lightly_dcl, weighted):
    a, b = unit(6, 16, seed=6, dtype=torch.float32), unit(6, 16, seed=7, dtype=torch.float32)
    ref_fn = lightly_dcl.DCLWLoss(temperature=0.1, sigma=0.5) if weighted else lightly_dcl.DCLLoss(0.1)
    ref = ref_fn(a, b)
    got = fn.dcl(a, b, 0.1, weighted=weighted, sigma=0.5, intra_modal_negatives=True)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)  # float32, another implementation


def test_symile_peer():
    symile = pytest.importorskip("symile")
    reps = [unit(6, 8, seed=10 + k, dtype=torch.float32) for k in range(3)]
    scale = torch.tensor(math.exp(1.2))
    ref = symile.Symile("n_squared")(reps, scale)
    # float32 against another implementation: a few ulp apart
    torch.testing.assert_close(fn.symile(reps, scale, negatives="n_squared"), ref, rtol=1e-5, atol=1e-5)
    torch.manual_seed(3)
    ref = symile.Symile("n")(reps, scale)
    torch.manual_seed(3)
    got = fn.symile(reps, scale, negatives="n")
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    queries, cands = reps[:2], reps[2]
    ref = symile.MIPSimilarity()(cands, [q.clone() for q in queries])
    torch.testing.assert_close(fn.mip_scores(queries, cands), ref, rtol=1e-5, atol=1e-5)
