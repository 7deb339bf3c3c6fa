"""The trainer's optimizer (fused AdamW / Adam on the CPU) against AdamW and Adam written out.

Reference: Loshchilov & Hutter, *Decoupled Weight Decay Regularization*, arXiv 1711.05101,
Algorithm 2 (AdamW); Kingma & Ba, arXiv 1412.6980, Algorithm 1 (Adam, here with L2 decay added
to the gradient, as ``torch.optim.Adam``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modalign.config import TrainerConfig
from modalign.objectives import CombinedObjective
from modalign.objectives.contrastive import ClipObjective
from modalign.training.trainer import _optimizer


def _naive(p: torch.Tensor, grads: list[torch.Tensor], lr: float, wd: float, decoupled: bool) -> torch.Tensor:
    """``p`` after one Adam(W) step per gradient, betas (0.9, 0.98), eps 1e-6, in float64."""
    b1, b2, eps = 0.9, 0.98, 1e-6
    p = p.double().clone()
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        g = g.double()
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    return p


@pytest.mark.parametrize("optimizer", ["adamw", "adam"])
def test_optimizer_steps_equal_adam_written_out(optimizer: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.LayerNorm(4))  # a matrix, vectors
    objective = CombinedObjective({"clip": ClipObjective(["a", "b"])}, {"clip": 1.0})
    cfg = TrainerConfig(lr=1e-2, weight_decay=0.1, optimizer=optimizer)
    opt = _optimizer(cfg, model, objective, {})
    params = [*model.parameters(), *objective.parameters()]
    start = [p.detach().clone() for p in params]
    grads = [[torch.randn_like(p) for p in params] for _ in range(3)]
    for step in grads:
        for p, g in zip(params, step):
            p.grad = g.clone()
        opt.step()
    for i, p in enumerate(params):
        # AdamW decays matrices only; Adam adds L2 decay to every gradient
        decays = optimizer == "adam" or (p.ndim >= 2 and i < len(list(model.parameters())))
        want = _naive(start[i], [g[i] for g in grads], 1e-2, 0.1 if decays else 0.0, optimizer == "adamw")
        torch.testing.assert_close(p.detach().double(), want, rtol=1e-5, atol=1e-6)
