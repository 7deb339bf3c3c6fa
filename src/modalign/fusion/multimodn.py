"""MultiModN: modular sequential fusion into a shared state (Swamy et al., NeurIPS 2023).

Reference: "MultiModN — Multimodal, Multi-Task, Interpretable Modular Networks", arXiv 2309.14118.
A trainable initial state ``s0`` (1, k) is tiled over the batch; modality encoders
``e_m(s, x_m) -> s'`` run one after another in ``order`` and each new state replaces the old one.
Task decoders (the task heads, see :mod:`modalign.fusion.heads`) are applied to ``s0`` and after
every step, so ``P[t] - P[t-1]`` is modality ``order[t-1]``'s contribution (the interpretability
output). The training loss sums the per-step task losses and a state-change regulariser
``w · mean_t mean((s_t - s_{t-1})²)``.

Missing data: per-sample skipping, ``s' = m ⊙ e(s, x) + (1 - m) ⊙ s``, so an absent modality leaves
that sample's state unchanged and a sample with nothing present keeps ``s0`` (prior prediction).
Skipped (sample, step) entries are marked in ``FusionOutput.step_mask`` and excluded from losses.

``reference_compat=True`` reproduces the original code: a step is skipped for the **whole batch**
when any row lacks the modality, and the regulariser is ``0.01 · w / E · Σ_t mean((s_t-s_{t-1})²)``
over all rows (loss-side quirks live in :func:`modalign.fusion.heads.multistep_task_loss`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from modalign.errors import ConfigError
from modalign.fusion.base import FusionModule, FusionOutput
from modalign.fusion.missing import shuffled_order
from modalign.registry import register


class StateEncoder(nn.Module):
    """One modality's state update ``e_m(s, x) -> s'``.

    Hidden Linear+ReLU(+Dropout) layers read ``x``; the state is concatenated to the input of the
    last Linear, which has no output activation (the generic encoder of the paper's code).

    Args:
        in_dim: feature width F_m.
        state_dim: k.
        hidden: widths of the hidden layers on x.
        dropout: dropout after each hidden activation.
    """

    def __init__(self, in_dim: int, state_dim: int, hidden: Sequence[int], dropout: float):
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(d + state_dim, state_dim)

    def forward(self, state: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, k) state and (B, F_m) features -> (B, k) new state."""
        return self.out(torch.cat([self.body(x), state], dim=1))  # (B, h + k) -> (B, k)


@register("fusion", "multimodn")
class MultiModNFusion(FusionModule):
    """Sequential state fusion with per-sample skipping of absent modalities.

    Args:
        dims: modality name -> feature width F_m.
        state_dim: state width k (= output width H).
        hidden: hidden widths of each modality's state encoder.
        dropout: dropout inside the state encoders.
        order: default step order (all names, each once); None uses ``dims`` order.
        shuffle: draw a random order per forward call in training mode (MultiModN's training-time
            order shuffle); evaluation always uses ``order``.
        state_change_weight: weight ``w`` of the state-change regulariser.
        reference_compat: reproduce the original code's whole-batch skip and extra 0.01 factor.

    Example:
        >>> f = MultiModNFusion({"a": 3, "b": 2}, state_dim=8)
        >>> out = f({"a": torch.randn(4, 3)}, {})
        >>> out.states.shape, out.order
        (torch.Size([3, 4, 8]), ('a', 'b'))
    """

    def __init__(
        self,
        dims: Mapping[str, int],
        state_dim: int = 32,
        hidden: Sequence[int] = (32,),
        dropout: float = 0.0,
        order: Sequence[str] | None = None,
        shuffle: bool = False,
        state_change_weight: float = 0.0,
        reference_compat: bool = False,
    ):
        super().__init__(dims)
        self.state_dim, self.hidden, self.dropout = state_dim, tuple(hidden), dropout
        self.order = self._check_order(order) if order is not None else self.names
        self.shuffle, self.state_change_weight = shuffle, state_change_weight
        self.reference_compat = reference_compat
        self.output_dim = state_dim
        self.s0 = nn.Parameter(torch.randn(1, state_dim))
        self.encoders = nn.ModuleDict(
            {m: StateEncoder(d, state_dim, self.hidden, dropout) for m, d in self.dims.items()}
        )

    def _check_order(self, order: Sequence[str]) -> tuple[str, ...]:
        if sorted(order) != sorted(self.names):
            raise ConfigError(
                f"multimodn order {list(order)} must list every modality {list(self.names)} once"
            )
        return tuple(order)

    def config(self) -> dict:
        return {
            "dims": self.dims,
            "state_dim": self.state_dim,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "order": list(self.order),
            "shuffle": self.shuffle,
            "state_change_weight": self.state_change_weight,
            "reference_compat": self.reference_compat,
        }

    def forward(
        self,
        features: Mapping[str, torch.Tensor],
        present: Mapping[str, torch.Tensor],
        order: Sequence[str] | None = None,
    ) -> FusionOutput:
        """Run the state through every modality step.

        Args:
            features: name -> (B, F_m); omitted names are absent.
            present: name -> (B,) bool.
            order: step order for this call; overrides ``order`` and ``shuffle``.

        Returns:
            FusionOutput: ``fused`` (B, k) final state, ``states`` (E+1, B, k),
            ``step_mask`` (E+1, B), ``order``, weighted ``regularizer``.
        """
        clean, mask, b = self.resolve(features, present)
        if order is not None:
            steps = self._check_order(order)
        elif self.training and self.shuffle:
            steps = shuffled_order(self.names)
        else:
            steps = self.order
        s = self.s0.expand(b, -1)  # (B, k)
        states, step_mask = [s], [torch.ones(b, dtype=torch.bool, device=s.device)]
        for m in steps:
            pm = mask[m]
            if self.reference_compat:
                # Original code: one absent row skips the step for everybody.
                pm = pm if bool(pm.all()) else torch.zeros_like(pm)
            if bool(pm.any()):
                s = torch.where(pm[:, None], self.encoders[m](s, clean[m]), s)  # (B, k)
            states.append(s)
            step_mask.append(pm)
        st = torch.stack(states)  # (E+1, B, k)
        sm = torch.stack(step_mask)  # (E+1, B)
        return FusionOutput(
            fused=s,
            states=st,
            step_mask=sm,
            order=tuple(steps),
            regularizer=self._state_change(st, sm),
        )

    def _state_change(self, states: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        w = self.state_change_weight
        if w == 0.0 or states.shape[0] < 2:
            return states.new_zeros(())
        delta = (states[1:] - states[:-1]).pow(2).mean(dim=-1)  # (E, B)
        if self.reference_compat:
            return 0.01 * w * delta.mean()
        evaluated = step_mask[1:].to(delta.dtype)  # skipped steps have zero change anyway
        return w * (delta * evaluated).sum() / evaluated.sum().clamp_min(1.0)
