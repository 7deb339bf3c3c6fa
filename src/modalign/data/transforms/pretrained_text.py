"""Text processor of a pretrained model: its own ``tokenizer.json`` (Hugging Face ``tokenizers``).

``load`` gives the (L,) int64 token ids of one text, special tokens included, truncated to
``max_length`` tokens (a longer text keeps its first tokens and the closing special token, as the
model's own tokenizer truncates). ``collate`` pads to the longest row of the batch and returns a
dict input ``{"input_ids": (B, T), "attention_mask": (B, T)}``.

The processor's files (tokenizer and model configs, not the weights) are saved beside the model
as ``processor-{modality}/`` and read back from there, so a saved model needs no original copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from modalign.data.transforms.base import Transform
from modalign.data.transforms.text import check_text
from modalign.errors import CheckpointError, ConfigError
from modalign.io import atomic_write_bytes

# weight files stay out of the processor copy: the weights live in model.safetensors
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ckpt", ".gguf"}
_MAX_COPIED_BYTES = 20_000_000


class PretrainedTextTransform(Transform):
    """Tokenise with the pretrained model's tokenizer (see module docstring).

    Args:
        path: the model directory holding ``tokenizer.json``.
        max_length: tokens kept per text, special tokens included (the model's maximum).
    """

    kind = "text"
    processor = "pretrained_text"
    sort_by_length = True

    def __init__(self, path: str, max_length: int):
        self.path = Path(path)
        self.max_length = int(max_length)
        self.restored = False
        self._tokenizer: Any = None
        self.pad_id = 0

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from tokenizers import Tokenizer

            file = self.path / "tokenizer.json"
            if not file.is_file():
                raise ConfigError(
                    f"{self.path} has no tokenizer.json: save the model's fast tokenizer there "
                    "(tokenizer.save_pretrained(DIR))"
                )
            try:
                tok = Tokenizer.from_file(str(file))
            except Exception as e:  # tokenizers raises its own exception types
                raise ConfigError(f"cannot read {file}: {e}") from None
            tok.no_padding()
            tok.enable_truncation(self.max_length)
            padding = tok.padding or {}
            self.pad_id = int(padding.get("pad_id", tok.token_to_id("[PAD]") or 0))
            self._tokenizer = tok
        return self._tokenizer

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor:
        check_text(payload)
        return torch.tensor(self.tokenizer.encode(payload).ids, dtype=torch.long)

    def placeholder(self) -> torch.Tensor:
        return torch.tensor([self.pad_id], dtype=torch.long)

    def collate(self, items: Sequence[torch.Tensor | None]) -> dict[str, torch.Tensor]:  # type: ignore[override]
        rows = [self.placeholder() if x is None else x for x in items]
        t = max((len(r) for r in rows), default=1)
        ids = torch.full((len(rows), t), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), t), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def settings(self) -> dict[str, Any]:
        return {"path": str(self.path), "max_length": self.max_length}

    def save_state(self, directory: Path, name: str) -> None:
        copy_without_weights(self.path, directory / f"processor-{name}")

    def load_state(self, directory: Path, name: str) -> None:
        target = directory / f"processor-{name}"
        if not (target / "tokenizer.json").is_file():
            raise CheckpointError(f"{target}/tokenizer.json is missing: the model directory is incomplete")
        self.path, self.restored, self._tokenizer = target, True, None

    def encoder_kwargs(self) -> dict[str, Any]:
        # restored from a saved model: the architecture comes from the copied config, the weights
        # from model.safetensors
        return {"path": str(self.path), "package": None, **({"load_weights": False} if self.restored else {})}


def copy_without_weights(source: Path, target: Path) -> None:
    """Copy ``source``'s small non-weight files (configs, tokenizer) into ``target``, each atomically."""
    if target.exists() and source.resolve() == target.resolve():
        return
    for f in sorted(source.rglob("*")):
        if f.is_file() and f.suffix not in _WEIGHT_SUFFIXES and f.stat().st_size <= _MAX_COPIED_BYTES:
            atomic_write_bytes(target / f.relative_to(source), f.read_bytes())
