"""Missing-modality training helpers: modality dropout and MultiModN's order shuffle.

Both are pure functions of masks / names plus an optional ``torch.Generator``; callers apply them
during training only (evaluation must see the data's real missingness).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from modalign.errors import ConfigError


def modality_dropout(
    present: Mapping[str, torch.Tensor],
    rates: Mapping[str, float],
    *,
    keep_one: bool = False,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Drop each present modality of each row independently with its own rate.

    Args:
        present: name -> (B,) bool masks. Not modified.
        rates: name -> drop probability in [0, 1]; modalities not listed keep rate 0.
        keep_one: when True, a row that had at least one present modality keeps one (a row left
            with none gets back one of its originally present modalities, chosen uniformly), so
            dropout never creates all-missing rows.
        generator: RNG for reproducibility (CPU generator).

    Returns:
        New name -> (B,) bool masks; ``new[m] <= present[m]`` elementwise.

    Raises:
        ConfigError: a rate outside [0, 1] or a rate for an unknown modality.

    Example:
        >>> p = {"a": torch.ones(4, dtype=torch.bool)}
        >>> modality_dropout(p, {"a": 1.0})["a"].any().item()
        False
    """
    for m, r in rates.items():
        if m not in present:
            raise ConfigError(f"modality dropout rate given for unknown modality {m!r}")
        if not 0.0 <= float(r) <= 1.0:
            raise ConfigError(f"modality dropout rate for {m!r} must be in [0, 1], got {r}")
    out: dict[str, torch.Tensor] = {}
    for m, p in present.items():
        r = float(rates.get(m, 0.0))
        p = p.bool()
        if r == 0.0:
            out[m] = p.clone()
            continue
        u = torch.rand(p.shape[0], generator=generator).to(p.device)
        out[m] = p & (u >= r)
    if keep_one and len(present) > 0:
        names = list(present)
        orig = torch.stack([present[m].bool() for m in names], dim=1)  # (B, M)
        new = torch.stack([out[m] for m in names], dim=1)  # (B, M)
        lost = orig.any(dim=1) & ~new.any(dim=1)  # (B,)
        if bool(lost.any()):
            # Random scores restricted to originally present modalities; argmax picks one.
            scores = torch.rand(orig.shape, generator=generator).to(orig.device)
            scores = torch.where(orig, scores, torch.full_like(scores, -1.0))
            pick = scores.argmax(dim=1)  # (B,)
            restore = torch.zeros_like(new)
            restore[torch.arange(len(pick)), pick] = True
            new = new | (restore & lost[:, None])
            out = {m: new[:, j] for j, m in enumerate(names)}
    return out


def shuffled_order(names: Sequence[str], generator: torch.Generator | None = None) -> tuple[str, ...]:
    """A uniformly random permutation of modality names (MultiModN's per-batch training order).

    Args:
        names: modality names.
        generator: RNG for reproducibility.

    Returns:
        The names in random order.
    """
    perm = torch.randperm(len(names), generator=generator).tolist()
    return tuple(names[i] for i in perm)
