"""One transform per modality kind: ``load(payload) -> Tensor | None``, ``collate``, ``fit``, save/restore.

A transform turns what a manifest cell (or a user's ``encode`` input) holds into a tensor. ``load``
raises :class:`~modalign.errors.DataError` with a reason for bad input and returns ``None`` when the
value counts as missing (e.g. a tabular row of NaNs). Transforms are deterministic, so a dataset can
be preprocessed once and cached.
"""

from __future__ import annotations

from typing import Any

from modalign.data.transforms.base import Transform


def build_transform(kind: str, params: dict[str, Any], processor: str = "") -> Transform:
    """The transform of ``kind`` with plain keyword settings (from the config's ``transform``).

    ``processor`` names a transform a pretrained encoder declared instead of the kind's default
    (its ``Transform.processor``, saved in a model's config.json).
    """
    if processor == "pretrained_text":
        from modalign.data.transforms.pretrained_text import PretrainedTextTransform

        return PretrainedTextTransform(**params)
    if processor == "pretrained_image":
        from modalign.data.transforms.pretrained_image import PretrainedImageTransform

        return PretrainedImageTransform(**params)
    if processor == "open_clip_text":
        from modalign.data.transforms.open_clip_text import OpenCLIPTextTransform

        return OpenCLIPTextTransform(**params)
    if processor:
        raise ValueError(f"unknown processor {processor!r}")
    if kind == "image":
        from modalign.data.transforms.image import ImageTransform

        return ImageTransform(**params)
    if kind == "audio":
        from modalign.data.transforms.audio import AudioTransform

        return AudioTransform(**params)
    if kind == "text":
        from modalign.data.transforms.text import TextTransform

        return TextTransform(**params)
    if kind == "tabular":
        from modalign.data.transforms.tabular import TabularTransform

        return TabularTransform(**params)
    if kind == "timeseries":
        from modalign.data.transforms.timeseries import TimeSeriesTransform

        return TimeSeriesTransform(**params)
    raise ValueError(f"unknown modality kind {kind!r}")


__all__ = ["Transform", "build_transform"]
