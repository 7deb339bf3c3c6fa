"""Registered modality encoders and the builder that applies presets."""

from __future__ import annotations

from typing import Any

from modalign.encoders import audio, image, tabular, text, timeseries  # noqa: F401  (registers)
from modalign.encoders.base import Encoder, ModalityTower
from modalign.registry import lookup

_PRESETS: dict[str, dict[str, dict]] = {
    **image.PRESETS,
    **audio.PRESETS,
    **text.PRESETS,
    **tabular.PRESETS,
    **timeseries.PRESETS,
}


def encoder_kwargs(name: str, preset: str, params: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """Resolved constructor keywords: preset numbers, then the user's params, then input shapes."""
    return {**_PRESETS.get(name, {}).get(preset, {}), **params, **inputs}


def build_encoder(name: str, kwargs: dict[str, Any]) -> Encoder:
    """Construct the registered encoder ``name`` with plain keywords."""
    return lookup("encoder", name)(**kwargs)


__all__ = ["Encoder", "ModalityTower", "build_encoder", "encoder_kwargs"]
