"""The objective contract: ``EmbeddingBatch -> LossOutput``, plus weighted combination."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from modalign.errors import ConfigError
from modalign.objectives._pairwise import pair_mask
from modalign.types import EmbeddingBatch, LossOutput

LOG_SCALE_INIT = math.log(1 / 0.07)
LOG_SCALE_MAX = math.log(100.0)


class Objective(nn.Module):
    """Base class: holds only learnable loss-side state (logit scale/bias) and its clamps.

    Subclasses are constructed as ``cls(modalities: list[str], **params)`` with plain-value params
    (they come from YAML) and implement ``forward(EmbeddingBatch) -> LossOutput``.
    """

    def forward(self, batch: EmbeddingBatch) -> LossOutput:  # pragma: no cover - interface
        raise NotImplementedError

    @torch.no_grad()
    def clamp_(self) -> None:
        """Clamp learnable state after every optimizer step (open_clip semantics)."""

    def zero(self, batch: EmbeddingBatch) -> torch.Tensor:
        """A scalar 0 connected to every embedding and parameter (nothing usable in the batch)."""
        total = torch.zeros((), dtype=_dtype(batch))
        for e in batch.emb.values():
            total = total + e.sum() * 0.0
        for p in self.parameters():
            total = total + p.sum() * 0.0
        return total

    def mean_over_pairs(
        self,
        batch: EmbeddingBatch,
        pairs: Sequence[tuple[str, str]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor],
        metrics: dict[str, float],
        min_rows: int = 2,
    ) -> LossOutput:
        """Average ``loss_fn(e_m, e_n, mask)`` over the pairs with >= ``min_rows`` joint rows.

        ``mask`` is the joint presence of the pair (None when nothing is masked); each pair's value
        is logged as ``metrics["m-n"]``.
        """
        losses = []
        for m, n in pairs:
            a, pa = embedding(batch, m)
            b, pb = embedding(batch, n)
            mask = pair_mask(pa, pb)
            if mask is not None and int(mask.sum()) < min_rows:
                continue
            loss = loss_fn(a, b, mask)
            metrics[f"{m}-{n}"] = float(loss.detach())
            losses.append(loss)
        if not losses:
            return LossOutput(self.zero(batch), metrics)
        return LossOutput(torch.stack(losses).mean(), metrics)


def _dtype(batch: EmbeddingBatch) -> torch.dtype:
    for e in batch.emb.values():
        return e.dtype
    return torch.get_default_dtype()


def embedding(batch: EmbeddingBatch, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(emb[name] (B, D), present[name] (B,) or None)``; a clear error when the key is missing."""
    if name not in batch.emb:
        hint = (
            "set model.teacher to a saved model directory"
            if name.endswith(".teacher")
            else "check the objective's modalities"
        )
        raise ConfigError(
            f"objective needs embeddings of {name!r} but the batch has {sorted(batch.emb)}; {hint}"
        )
    return batch.emb[name], batch.present.get(name)


def check_modalities(modalities: Sequence[str], at_least: int, objective: str) -> list[str]:
    """Validate the modality list of an objective (ConfigError naming the objective)."""
    names = list(modalities)
    if len(names) < at_least or len(set(names)) != len(names):
        raise ConfigError(f"objective {objective!r} needs >= {at_least} distinct modalities, got {names}")
    return names


def check_positive(value: float, field: str, objective: str) -> float:
    """``value > 0`` or a ConfigError naming the parameter."""
    if not value > 0:
        raise ConfigError(f"objective {objective!r}: {field} must be > 0, got {value!r}")
    return float(value)


def log_scale(temperature: float) -> float:
    """``θ = log(1/τ)``; exactly ``LOG_SCALE_INIT`` for CLIP's 0.07."""
    return math.log(1.0 / temperature)


class LearnableScale(nn.Module):
    """``θ = log s``, ``s = exp θ``; clamped in place to ``[log_min, log_max]`` after each step."""

    def __init__(
        self,
        init: float = LOG_SCALE_INIT,
        log_min: float = 0.0,
        log_max: float = LOG_SCALE_MAX,
        learn: bool = True,
    ):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init)), requires_grad=learn)
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
        if total is None:  # no contrastive objective (a fusion-only model)
            total = torch.zeros(())
        return LossOutput(total, metrics)

    def logit_scale(self) -> float | None:
        """The learned (or fixed) scale ``s = 1/τ`` of the first objective, in config order, that
        has one (clip, siglip, cwcl, symile, affinity_distillation, ...); None if none has."""
        for objective in self.objectives.values():
            for module in objective.modules():
                if isinstance(module, LearnableScale):
                    return float(module().detach())
        return None

    @torch.no_grad()
    def clamp_(self) -> None:
        for objective in self.objectives.values():
            objective.clamp_()  # type: ignore[operator]
