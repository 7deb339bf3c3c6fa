"""Image processor of a pretrained Hugging Face vision model: its ``preprocessor_config.json``.

The model's input size, mean and std (``size``/``crop_size``, ``image_mean``, ``image_std``) drive
the usual :class:`ImageTransform` (Pillow decode, RGB, resize shorter side + centre crop,
normalise); settings the user writes in ``transform`` override them. The model directory's config
files (not the weights) are saved beside the model as ``processor-{modality}/``, so a saved model
rebuilds its architecture without the original directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modalign.data.transforms.image import ImageTransform
from modalign.data.transforms.pretrained_text import copy_without_weights
from modalign.errors import CheckpointError


class PretrainedImageTransform(ImageTransform):
    """:class:`ImageTransform` that also carries (and saves) its model directory ``path``."""

    processor = "pretrained_image"

    def __init__(self, path: str, **settings: Any):
        super().__init__(**settings)
        self.path = Path(path)
        self.restored = False

    def settings(self) -> dict[str, Any]:
        return {**super().settings(), "path": str(self.path)}

    def save_state(self, directory: Path, name: str) -> None:
        copy_without_weights(self.path, directory / f"processor-{name}")

    def load_state(self, directory: Path, name: str) -> None:
        target = directory / f"processor-{name}"
        if not (target / "config.json").is_file():
            raise CheckpointError(f"{target}/config.json is missing: the model directory is incomplete")
        self.path, self.restored = target, True

    def encoder_kwargs(self) -> dict[str, Any]:
        extra = {"load_weights": False} if self.restored else {}
        return {**super().encoder_kwargs(), "path": str(self.path), "package": None, **extra}


def hf_image_settings(preprocessor: dict[str, Any]) -> dict[str, Any]:
    """ImageTransform settings from a Hugging Face ``preprocessor_config.json`` (missing keys left out)."""
    out: dict[str, Any] = {}
    for key in ("crop_size", "size"):
        size = preprocessor.get(key)
        if isinstance(size, dict):
            size = size.get("height", size.get("shortest_edge"))
        if isinstance(size, int) and size > 0:
            out["size"] = size
            break
    for key, ours in (("image_mean", "mean"), ("image_std", "std")):
        if isinstance(preprocessor.get(key), list):
            out[ours] = tuple(float(v) for v in preprocessor[key])
    return out
