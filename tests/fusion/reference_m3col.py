"""An independent restatement of the M3CoL training recipe: the oracle of the config path.

Until the port it was a second model class with its own loop; the recipe now runs through
``MultimodalModel`` + ``Trainer`` from a config, and this file states it again in plain torch, with
the same random draws in the same order, so a test can check that the config path reproduces the
recipe's loss history and predictions:

* scaling: per-feature min-max with training statistics (float64), then float32;
* per modality: Linear(F, h)-ReLU-Dropout-Linear(h, F') encoder;
* concat fusion (the library's registered module: a fusion leaf with its own tests);
* fusion head and one auxiliary head per modality: Linear-ReLU-Dropout-(Linear-ReLU)^(depth-1)-Linear;
* loss: CE(fused) + aux_weight * sum_m CE(aux_m) + lam * sum over the cycle a -> b of M3Co (mixing the
  unnormalised features; weights Beta(0.15, 0.15) on a random half of the rows, tau 0.1) while
  step / steps < mixup_fraction, then Soft-CLIP (tau 0.125);
* full batch in data order, Adam with L2 weight decay, constant lr, EMA of the weights;
* prediction: mean of the fused and auxiliary heads' probabilities.

Deliberately no import of modalign's model, trainer, heads or objectives.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from modalign.fusion import build_fusion


def _sce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def _head(in_dim: int, hidden: int, dropout: float, depth: int, classes: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout)]
    for _ in range(depth - 1):
        layers += [nn.Linear(hidden, hidden), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(hidden, classes))


def train_reference(
    x_train: dict[str, np.ndarray],
    y_train: np.ndarray,
    x_test: dict[str, np.ndarray],
    *,
    hidden: int,
    feature_dim: int,
    dropout: float,
    head_hidden: int,
    head_depth: int,
    head_dropout: float,
    lam: float,
    mixup_fraction: float,
    steps: int,
    lr: float,
    weight_decay: float,
    ema_decay: float,
    seed: int,
) -> tuple[list[float], np.ndarray]:
    """Loss after every step and the (N_test, C) ensemble probabilities of the EMA weights."""
    names = list(x_train)
    classes = int(y_train.max()) + 1
    lo = {m: x_train[m].min(0) for m in names}
    span = {m: np.where(x_train[m].max(0) - lo[m] > 0, x_train[m].max(0) - lo[m], 1.0) for m in names}

    def scaled(x: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return {m: torch.tensor((x[m] - lo[m]) / span[m], dtype=torch.float32) for m in names}

    torch.manual_seed(seed)
    enc = nn.ModuleDict(
        {
            m: nn.Sequential(
                nn.Linear(x_train[m].shape[1], hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, feature_dim),
            )
            for m in names
        }
    )
    fusion = build_fusion("concat", {m: feature_dim for m in names})
    head = _head(fusion.output_dim, head_hidden, head_dropout, head_depth, classes)
    aux = nn.ModuleDict(
        {m: _head(feature_dim, head_hidden, head_dropout, head_depth, classes) for m in names}
    )
    modules = nn.ModuleList([enc, fusion, head, aux])
    torch.manual_seed(seed)
    params = [p for p in modules.parameters()]
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    avg = [p.detach().clone() for p in params]
    xs, y = scaled(x_train), torch.as_tensor(y_train, dtype=torch.long)
    n = len(y)
    everyone = torch.ones(n, dtype=torch.bool)
    cycle = list(zip(names, names[1:] + names[:1], strict=True))
    history = []
    modules.train()
    for step in range(steps):
        feats = {m: enc[m](xs[m]) for m in names}  # (N, F')
        fused = fusion(feats, {m: everyone for m in names}).fused
        loss = F.cross_entropy(head(fused), y)
        for m in names:
            loss = loss + F.cross_entropy(aux[m](feats[m]), y)
        unit = {m: F.normalize(f, dim=1) for m, f in feats.items()}
        contrastive = 0.0
        for a, b in cycle:
            if step / steps < mixup_fraction:
                perm = torch.randperm(n)
                betas = torch.distributions.Beta(0.15, 0.15).sample((n,))
                betas = torch.where(torch.rand(n) < 0.5, betas, torch.ones_like(betas))
                mixed = betas[:, None] * feats[a] + (1 - betas[:, None]) * feats[a][perm]
                z = F.normalize(mixed, dim=1) @ unit[b].T / 0.1  # (N, N)
                t = torch.diag(betas)
                t[torch.arange(n), perm] += 1 - betas
                contrastive = contrastive + 0.5 * (_sce(z, t) + _sce(z.T, t.T))
            else:
                p = unit[a] @ unit[b].T / 0.125
                q = torch.softmax(unit[b] @ unit[b].T / 0.125, dim=1)
                contrastive = contrastive + 0.5 * (_sce(p, q) + _sce(p.T, q))
        loss = loss + lam * contrastive
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for s, p in zip(avg, params, strict=True):
                s.mul_(ema_decay).add_((1 - ema_decay) * p)
        history.append(float(loss.detach()))
    with torch.no_grad():
        for s, p in zip(avg, params, strict=True):
            p.copy_(s)
        modules.eval()
        xt = scaled(x_test)
        feats = {m: enc[m](xt[m]) for m in names}
        everyone = torch.ones(len(next(iter(xt.values()))), dtype=torch.bool)
        probs = torch.softmax(head(fusion(feats, {m: everyone for m in names}).fused), dim=1)
        for m in names:
            probs = probs + torch.softmax(aux[m](feats[m]), dim=1)
        probs = probs / (1 + len(names))
    return history, probs.numpy()
