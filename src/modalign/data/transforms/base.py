"""The transform interface shared by every modality kind."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from modalign.types import Inputs


class Transform:
    """Base class. Subclasses set ``kind`` and implement ``load`` and ``placeholder``.

    ``fit`` learns training-split state (tokenizer, statistics); ``state()``/``restore()`` persist it
    in the model directory as JSON-able data; ``encoder_kwargs`` tells the encoder its input shape.
    """

    kind = ""
    # "" = the kind's default transform; else the name build_transform rebuilds it from
    processor = ""
    # rows of different lengths padded per batch: encode batches similar lengths together
    sort_by_length = False

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

    def augments(self) -> bool:
        """True when :meth:`augment` changes its input (then encoder outputs cannot be cached)."""
        return False

    def collate(self, items: Sequence[torch.Tensor | None]) -> Inputs:
        """Stack items (B of them), using the placeholder for ``None``.

        A processor may return a dict of (B, ...) tensors instead (see :class:`~modalign.types.Batch`).
        """
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
