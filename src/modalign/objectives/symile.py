"""Registered Symile objective and higher-order (multi-modality query) scoring."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from modalign.errors import ConfigError
from modalign.objectives.base import (
    LearnableScale,
    Objective,
    check_modalities,
    check_positive,
    embedding,
    log_scale,
)
from modalign.objectives.functional import mip_scores, symile
from modalign.registry import register
from modalign.types import EmbeddingBatch, LossOutput


@register("objective", "symile")
class SymileObjective(Objective):
    """Symile: contrastive learning with the multilinear inner product of all modalities.

    Optimises ``(1/M) Σ_m CE(s·MIP(e^(m)_i, candidate tuples), positive (i, …, i))``, a lower bound
    on the total correlation of the M modalities, so it captures information only jointly present
    in >= 3 modalities (which pairwise CLIP cannot). ``negatives="n"``: B columns with independently
    shuffled non-anchor rows (stochastic, ``O(B²D)``); ``"n_squared"``: all ``B^{M−1}`` tuples
    (deterministic, memory ``O(B^{M−1}D)``). With M = 2 it is InfoNCE (either mode).

    Temperature: ``s = 1/τ = exp θ``, ``θ`` initialised to ``log(1/init_temperature)``; Symile's
    reference does not clamp, so ``min_scale``/``max_scale`` are off unless given (MIPs of unit
    vectors shrink with D, so the scale may need to exceed CLIP's 100). Reference: Saporta et al.,
    *Contrasting with Symile: Simple Model-Agnostic Representation Learning for Unlimited
    Modalities*, arXiv 2411.01053. Masks: rows where **every** modality is present (the paper
    handles missing modalities at the encoder input). Prefer ``clip`` when only pairwise
    information matters; use :meth:`score` for retrieval with several query modalities.

    Example:
        >>> obj = SymileObjective(["a", "b", "c"], negatives="n_squared")
        >>> scores = obj.score({"a": ea, "b": eb}, target=candidates_c)  # (B, K)
    """

    def __init__(
        self,
        modalities: Sequence[str],
        *,
        negatives: str = "n",
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        min_scale: float | None = None,
        max_scale: float | None = None,
    ):
        super().__init__()
        self.modalities = check_modalities(modalities, 2, "symile")
        if negatives not in ("n", "n_squared"):
            raise ConfigError(f"objective 'symile': negatives={negatives!r}; use 'n' or 'n_squared'")
        self.negatives = negatives
        init = log_scale(check_positive(init_temperature, "init_temperature", "symile"))
        lo = -math.inf if min_scale is None else math.log(check_positive(min_scale, "min_scale", "symile"))
        hi = math.inf if max_scale is None else math.log(check_positive(max_scale, "max_scale", "symile"))
        self.scale = LearnableScale(init, log_min=lo, log_max=hi, learn=learn_temperature)

    def forward(self, batch: EmbeddingBatch) -> LossOutput:
        s = self.scale()
        embs, mask = [], None
        for name in self.modalities:
            e, p = embedding(batch, name)
            embs.append(e)
            if p is not None:
                mask = p if mask is None else mask & p
        metrics = {"logit_scale": float(s.detach())}
        if mask is not None and int(mask.sum()) < 2:
            return LossOutput(self.zero(batch), metrics)
        loss = symile(embs, s, negatives=self.negatives, present=mask)
        return LossOutput(loss, metrics)

    def score(self, queries: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Higher-order retrieval scores: ``MIP(q^(1)_i, …, q^(Q)_i, c_k)``.

        Args:
            queries: modality name -> (B, D) unit rows; any non-empty subset of the modalities.
            target: (K, D) unit rows of the candidate modality.

        Returns:
            (B, K) raw MIP scores (multiply by ``self.scale()`` for softmax probabilities).

        Raises:
            ConfigError: an unknown or empty set of query modalities.
        """
        unknown = sorted(set(queries) - set(self.modalities))
        if unknown or not queries:
            raise ConfigError(
                f"symile score: queries {sorted(queries)} must be a non-empty subset of {self.modalities}"
            )
        return mip_scores([queries[name] for name in self.modalities if name in queries], target)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.scale.clamp_()
