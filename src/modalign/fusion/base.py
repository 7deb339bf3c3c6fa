"""Fusion contract: per-modality features + ``present`` masks -> one representation.

Every fusion module is an ``nn.Module`` registered with ``@register("fusion", name)``, built as
``cls(dims, **kwargs)`` where ``dims`` maps modality *name* to its feature width F_m, and called as
``forward(features, present) -> FusionOutput``.

Missing data rules shared by all modules (see :func:`resolve_present`):

* a modality missing from ``features`` is absent for every row;
* ``present[m][i] = False`` means row i has no modality m;
* a row with any NaN in ``features[m]`` counts as absent for m (NaN is never data);
* absent rows are replaced by zeros *before* any arithmetic so NaN placeholders cannot leak into
  outputs or gradients, and their values never reach the output.

Modules contain no batch-dependent layers (no BatchNorm), so row i of a batch equals sample i
processed alone with only its present modalities; tests pin that invariant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from modalign.errors import ConfigError, DataError


@dataclass(frozen=True)
class FusionOutput:
    """What a fusion module returns.

    Attributes:
        fused: (B, H) fused representation fed to the task heads.
        states: (S, B, H) intermediate representations, one per step, when the module has steps
            (MultiModN: ``states[0]`` is the initial state ``s0``, ``states[t]`` the state after the
            t-th modality of ``order``); None otherwise.
        step_mask: (S, B) bool, True where ``states[t, i]`` was produced by an evaluated step
            (always True at t=0; False where the step's modality was absent so the state was
            carried over). None when ``states`` is None.
        order: modality names in the order the steps ran (length S-1), or None.
        regularizer: scalar tensor added to the training loss (MultiModN's state-change term,
            already weighted); zero for modules without one.
    """

    fused: torch.Tensor
    states: torch.Tensor | None = None
    step_mask: torch.Tensor | None = None
    order: tuple[str, ...] | None = None
    regularizer: torch.Tensor | None = None


class FusionModule(nn.Module):
    """Base class: holds ``dims`` (modality name -> F_m) and ``output_dim`` (H)."""

    output_dim: int = 0

    def __init__(self, dims: Mapping[str, int]):
        super().__init__()
        if len(dims) == 0:
            raise ConfigError("fusion needs at least one modality in `dims`")
        for name, d in dims.items():
            if not isinstance(d, int) or d <= 0:
                raise ConfigError(f"fusion dims[{name!r}] must be a positive int, got {d!r}")
        self.dims: dict[str, int] = dict(dims)
        self.names: tuple[str, ...] = tuple(dims)

    def config(self) -> dict:
        """Plain kwargs that rebuild this module with ``cls(**config())`` (saved in config.json)."""
        raise NotImplementedError

    def resolve(
        self, features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
        """What every ``forward(features, present)`` starts with: :func:`resolve_present` of this
        module's modalities on its parameters' device and dtype.

        Args:
            features: name -> (B, F_m); omitted names are absent.
            present: name -> (B,) bool.
        """
        device, dtype = param_device_dtype(self)
        return resolve_present(self.names, self.dims, features, present, device, dtype)


def batch_size_of(features: Mapping[str, torch.Tensor], present: Mapping[str, torch.Tensor]) -> int:
    """Batch size B from the first tensor found; raises DataError when none is given."""
    for t in list(features.values()) + list(present.values()):
        return int(t.shape[0])
    raise DataError("fusion got no features and no present masks; cannot infer batch size")


def resolve_present(
    names: tuple[str, ...],
    dims: Mapping[str, int],
    features: Mapping[str, torch.Tensor],
    present: Mapping[str, torch.Tensor],
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], int]:
    """Clean features and effective present masks for every known modality.

    Args:
        names: modality names the module knows, in its order.
        dims: name -> F_m.
        features: name -> (B, F_m); modalities may be omitted (absent for all rows).
        present: name -> (B,) bool; omitted while the feature exists means all present.
        device: device of the module's parameters.
        dtype: dtype of the module's parameters.

    Returns:
        ``(clean, mask, B)``: ``clean[m]`` (B, F_m) with absent rows zeroed, ``mask[m]`` (B,) bool
        (False where absent, NaN, or not given).

    Raises:
        DataError: an unknown modality name, or a feature of the wrong shape.
    """
    unknown = set(features) - set(names)
    if unknown:
        raise DataError(
            f"fusion got unknown modalities {sorted(unknown)}; known: {list(names)}",
            reason="unknown_modality",
        )
    b = batch_size_of(features, present)
    clean: dict[str, torch.Tensor] = {}
    mask: dict[str, torch.Tensor] = {}
    for m in names:
        x = features.get(m)
        if x is None:
            clean[m] = torch.zeros(b, dims[m], device=device, dtype=dtype)
            mask[m] = torch.zeros(b, dtype=torch.bool, device=device)
            continue
        if x.dim() != 2 or x.shape[0] != b or x.shape[1] != dims[m]:
            raise DataError(
                f"features[{m!r}] must have shape ({b}, {dims[m]}), got {tuple(x.shape)}",
                reason="bad_shape",
                column=m,
            )
        x = x.to(device=device, dtype=dtype)
        p = present.get(m)
        pm = torch.ones(b, dtype=torch.bool, device=device) if p is None else p.to(device).bool()
        pm = pm & ~torch.isnan(x).any(dim=1)
        # where(), not multiplication: NaN * 0 is NaN.
        clean[m] = torch.where(pm[:, None], x, torch.zeros((), device=device, dtype=dtype))
        mask[m] = pm
    return clean, mask, b


def param_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and dtype of a module's first parameter."""
    p = next(module.parameters())
    return p.device, p.dtype
