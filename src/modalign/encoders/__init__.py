"""Registered modality encoders and the builder that applies presets."""

from __future__ import annotations

from typing import Any

from modalign.data.transforms import Transform, build_transform
from modalign.encoders import audio, image, pretrained, tabular, text, timeseries  # noqa: F401  (registers)
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


def build_processor(
    name: str, kind: str, encoder_params: dict[str, Any], transform: dict[str, Any], user_set: dict[str, Any]
) -> Transform:
    """The transform encoder ``name`` declares, else the default transform of ``kind``.

    Args:
        transform: every transform setting (the kind's defaults filled in).
        user_set: the settings the user wrote; a pretrained encoder's processor keeps its own
            values (size, normalisation, max length) for the others.
    """
    own = lookup("encoder", name).processor(encoder_params, user_set)
    return own if own is not None else build_transform(kind, transform)


def restore_kwargs(name: str, saved: dict[str, Any], transform: Transform) -> dict[str, Any]:
    """Keywords rebuilding encoder ``name`` of a saved model: pretrained encoders take their
    architecture from the saved processor files and skip loading weights (model.safetensors has them)."""
    if getattr(lookup("encoder", name), "pretrained", False):
        return {**saved, **transform.encoder_kwargs(), "load_weights": False}
    return saved


__all__ = ["Encoder", "ModalityTower", "build_encoder", "build_processor", "encoder_kwargs", "restore_kwargs"]
