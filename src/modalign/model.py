"""MultimodalModel: one tower per named modality, saved as config.json + model.safetensors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from modalign.data.dataset import ModalitySource
from modalign.data.transforms import Transform, build_transform
from modalign.encoders import ModalityTower, build_encoder
from modalign.errors import CheckpointError, DataError
from modalign.io import atomic_write_bytes, atomic_write_json
from modalign.types import Batch, EmbeddingBatch

FORMAT = "modalign-model"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModalitySpec:
    """A named modality of a model: its kind, manifest column, encoder and fitted transform."""

    name: str
    kind: str
    column: str
    encoder: str
    encoder_kwargs: dict[str, Any]
    transform: Transform

    def source(self) -> ModalitySource:
        return ModalitySource(self.name, self.column, self.transform)


class MultimodalModel(nn.Module):
    """Encoders for any number of named modalities into one space of dimension ``embed_dim``.

    Example:
        >>> model = modalign.load("runs/quickstart/model")
        >>> emb = model.encode(["three", "seven"], modality="text")  # (2, D) unit rows
    """

    def __init__(self, specs: Sequence[ModalitySpec], embed_dim: int, head: str = "linear"):
        super().__init__()
        self.specs = {s.name: s for s in specs}
        self.embed_dim = embed_dim
        self.head = head
        self.towers = nn.ModuleDict(
            {
                s.name: ModalityTower(build_encoder(s.encoder, s.encoder_kwargs), embed_dim, head)
                for s in specs
            }
        )

    @property
    def modalities(self) -> list[str]:
        return list(self.specs)

    def sources(self) -> list[ModalitySource]:
        return [s.source() for s in self.specs.values()]

    def forward(self, batch: Batch) -> EmbeddingBatch:
        """Embed every modality of ``batch``: ``emb[name]`` (B, D), zeros where absent."""
        emb = {
            name: self.towers[name](batch.inputs[name], batch.present[name])
            for name in self.specs
            if name in batch.inputs
        }
        return EmbeddingBatch(emb=emb, present={n: batch.present[n] for n in emb})

    @torch.no_grad()
    def encode(
        self,
        inputs: Sequence[Any],
        modality: str,
        batch_size: int = 64,
        base_dir: str | Path | None = None,
    ) -> np.ndarray:
        """Embed raw inputs of one modality: (N, D) float32 L2-normalised rows.

        Args:
            inputs: what the modality's kind takes: file paths (relative to ``base_dir``, default
                the working directory), strings for text, arrays or PIL images for images,
                arrays or ``(array, sample_rate)`` for audio, dicts or number lists for tabular.
            modality: the modality *name* (e.g. "caption").
            batch_size: rows per forward pass.

        Raises:
            DataError: an input cannot be read (names its position and the file).
        """
        if modality not in self.specs:
            raise DataError(
                f"unknown modality {modality!r}; this model has {self.modalities}", column=modality
            )
        if isinstance(inputs, (str, bytes)):
            raise DataError("encode expects a list of inputs, got a single string", column=modality)
        spec = self.specs[modality]
        base = Path(base_dir) if base_dir is not None else Path.cwd()
        was_training = self.training
        self.eval()
        out = []
        try:
            for start in range(0, len(inputs), batch_size):
                items = []
                for k, x in enumerate(inputs[start : start + batch_size]):
                    try:
                        t = spec.transform.load(x, base)
                    except DataError as e:
                        raise e.located(row=start + k, column=modality) from None
                    if t is None:
                        raise DataError(
                            "input is empty/missing",
                            reason="missing",
                            row=start + k,
                            column=modality,
                        )
                    items.append(t)
                x = spec.transform.collate(items)
                present = torch.ones(len(items), dtype=torch.bool)
                out.append(self.towers[modality](x, present).float().numpy())
        finally:
            self.train(was_training)
        if not out:
            return np.zeros((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(out)

    # --- artifact ---------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The JSON description saved as ``config.json`` (rebuilds the architecture)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "embed_dim": self.embed_dim,
            "head": self.head,
            "modalities": {
                s.name: {
                    "kind": s.kind,
                    "column": s.column,
                    "encoder": s.encoder,
                    "encoder_kwargs": s.encoder_kwargs,
                    "transform": s.transform.settings(),
                }
                for s in self.specs.values()
            },
        }

    def save_transforms(self, directory: str | Path) -> None:
        """Write config.json and the transforms' fitted state (no weights)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for s in self.specs.values():
            s.transform.save_state(directory, s.name)
        atomic_write_json(directory / "config.json", self.describe())

    def save(self, directory: str | Path) -> None:
        """Write ``config.json``, ``model.safetensors`` and the transform files atomically."""
        from safetensors.torch import save

        directory = Path(directory)
        self.save_transforms(directory)
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        atomic_write_bytes(directory / "model.safetensors", save(state, metadata={"format": FORMAT}))

    @classmethod
    def from_config_dir(cls, directory: str | Path) -> MultimodalModel:
        """Rebuild the architecture and transforms from ``config.json`` (random weights)."""
        directory = Path(directory)
        try:
            desc = json.loads((directory / "config.json").read_text())
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{directory} is not a modalign model directory: {e}") from None
        if desc.get("format") != FORMAT:
            raise CheckpointError(f"{directory}/config.json is not a {FORMAT} config")
        specs = []
        for name, m in desc["modalities"].items():
            transform = build_transform(m["kind"], m["transform"])
            transform.load_state(directory, name)
            specs.append(
                ModalitySpec(name, m["kind"], m["column"], m["encoder"], m["encoder_kwargs"], transform)
            )
        return cls(specs, desc["embed_dim"], desc["head"])

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> MultimodalModel:
        """Load a saved model; raises :class:`CheckpointError` for a missing/truncated/foreign one."""
        model = cls.from_config_dir(directory)
        try:
            model.load_state_dict(load_safetensors(Path(directory) / "model.safetensors"))
        except RuntimeError as e:  # missing/unexpected keys or shape mismatch
            raise CheckpointError(f"weights in {directory} do not match its config.json: {e}") from None
        model.eval()
        return model


def load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning every failure into :class:`CheckpointError`."""
    from safetensors.torch import load

    try:
        return load(path.read_bytes())
    except OSError as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    except Exception as e:  # safetensors raises SafetensorError / ValueError on bad bytes
        raise CheckpointError(f"{path} is truncated or not a safetensors file: {e}") from None


def load(path: str | Path) -> MultimodalModel:
    """Load a model directory written by ``MultimodalModel.save`` (or ``modalign train``)."""
    return MultimodalModel.from_pretrained(path)
