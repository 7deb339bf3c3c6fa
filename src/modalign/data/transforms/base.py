"""The transform interface shared by every modality kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


class Transform:
    """Base class. Subclasses set ``kind`` and implement ``load`` and ``placeholder``.

    ``fit`` learns training-split state (tokenizer, statistics); ``state()``/``restore()`` persist it
    in the model directory as JSON-able data; ``encoder_kwargs`` tells the encoder its input shape.
    """

    kind = ""

    def fit(self, payloads: list[Any]) -> None:
        """Learn state from the training split's present payloads (default: nothing to learn)."""

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor | None:
        raise NotImplementedError

    def placeholder(self) -> torch.Tensor:
        """The tensor collated in place of an absent row (never seen by encoders)."""
        raise NotImplementedError

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """Random training-time augmentation of a collated batch (default: none).

        Draws from torch's global RNG, which checkpoints save, so resumed runs stay exact.
        """
        return x

    def collate(self, items: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Stack items (B of them), using the placeholder for ``None``."""
        return torch.stack([self.placeholder() if x is None else x for x in items])

    def settings(self) -> dict[str, Any]:
        """Constructor keywords, to rebuild the transform from a model's config.json."""
        return {}

    def save_state(self, directory: Path, name: str) -> None:
        """Write fitted state (tokenizer, statistics) for modality ``name`` into ``directory``."""

    def load_state(self, directory: Path, name: str) -> None:
        """Read the state written by :meth:`save_state`."""

    def encoder_kwargs(self) -> dict[str, Any]:
        """Input-shape keywords the encoder needs (e.g. ``in_channels``, ``vocab_size``)."""
        return {}
