"""The objective contract: ``EmbeddingBatch -> LossOutput``, plus weighted combination."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from modalign.errors import ConfigError
from modalign.types import EmbeddingBatch, LossOutput

LOG_SCALE_INIT = math.log(1 / 0.07)
LOG_SCALE_MAX = math.log(100.0)


class Objective(nn.Module):
    """Base class: holds only learnable loss-side state (logit scale/bias) and its clamps."""

    def forward(self, batch: EmbeddingBatch) -> LossOutput:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp learnable state after every optimizer step (open_clip semantics)."""


class LearnableScale(nn.Module):
    """``θ = log s`` with ``s = exp θ``; clamped in place to ``[log_min, log_max]`` after each step."""

    def __init__(self, init: float = LOG_SCALE_INIT, log_min: float = 0.0, log_max: float = LOG_SCALE_MAX):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init)))
        self.log_min = log_min
        self.log_max = log_max

    def forward(self) -> torch.Tensor:
        return self.log_scale.exp()

    @torch.no_grad()
    def clamp_(self) -> None:
        self.log_scale.clamp_(self.log_min, self.log_max)


def modality_pairs(names: Sequence[str], anchor: str | None) -> list[tuple[str, str]]:
    """Unordered pairs of modalities: all of them, or each modality against ``anchor``."""
    if anchor is None:
        return list(itertools.combinations(names, 2))
    if anchor not in names:
        raise ConfigError(f"objective anchor {anchor!r} is not a modality; modalities: {list(names)}")
    return [(anchor, m) for m in names if m != anchor]


class CombinedObjective(nn.Module):
    """Weighted sum of named objectives; metrics are prefixed with each objective's name."""

    def __init__(self, objectives: dict[str, Objective], weights: dict[str, float]):
        super().__init__()
        self.objectives = nn.ModuleDict(objectives)
        self.weights = dict(weights)

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        total: torch.Tensor | None = None
        metrics: dict[str, float] = {}
        for name, objective in self.objectives.items():
            out = objective(batch)
            term = self.weights[name] * out.loss
            total = term if total is None else total + term
            metrics[f"{name}/loss"] = float(out.loss.detach())
            metrics.update({f"{name}/{k}": v for k, v in out.metrics.items()})
        assert total is not None  # the config schema requires at least one objective
        return LossOutput(total, metrics)

    @torch.no_grad()
    def clamp_(self) -> None:
        for objective in self.objectives.values():
            objective.clamp_()  # type: ignore[operator]
