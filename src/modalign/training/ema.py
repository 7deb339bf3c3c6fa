"""Exponential moving average of a model's weights (Polyak averaging)."""

from __future__ import annotations

import torch
from torch import nn


class WeightAverage:
    """``avg = decay·avg + (1 − decay)·w`` after every optimizer step, for every trainable parameter.

    The average starts at the initial weights. :meth:`copy_to` loads it into the model (done once at
    the end of training); its tensors go into checkpoints so a resumed run keeps the same average.

    Args:
        model: the model whose trainable parameters are averaged.
        decay: in [0, 1); 0 keeps the last weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.avg = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.avg:
                self.avg[k].lerp_(p.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        for k, p in model.named_parameters():
            if k in self.avg:
                p.copy_(self.avg[k])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.avg)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        missing = set(self.avg) - set(state)
        if missing:
            raise KeyError(f"weight average lacks {sorted(missing)[:3]}")
        self.avg = {k: state[k].clone() for k in self.avg}
