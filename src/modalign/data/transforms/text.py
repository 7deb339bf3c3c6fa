"""Text transform: a byte-level BPE tokenizer trained on the training split (Hugging Face ``tokenizers``).

Output (max_length,) int64 token ids, right-padded with ``PAD_ID`` = 0. The trained tokenizer is saved
with the model as ``tokenizer-{modality}.json`` (the tokenizers JSON format).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modalign.data.transforms.base import Transform
from modalign.errors import CheckpointError, DataError
from modalign.io import atomic_write_bytes

PAD_ID = 0
SPECIALS = ["[PAD]", "[UNK]"]


class TextTransform(Transform):
    """Tokenise text with a BPE vocabulary learned by :meth:`fit`.

    Args:
        vocab_size: upper bound of the vocabulary (small corpora learn fewer merges).
        max_length: tokens kept per text; longer texts are truncated.
        lowercase: lower-case (and NFKC-normalise) before tokenising.
        min_frequency: merges seen fewer times are not learned.
    """

    kind = "text"

    def __init__(
        self,
        vocab_size: int = 8000,
        max_length: int = 64,
        lowercase: bool = True,
        min_frequency: int = 1,
    ):
        self.vocab_size = vocab_size
        self.max_length = max_length
        self.lowercase = lowercase
        self.min_frequency = min_frequency
        self._tokenizer: Any = None

    def fit(self, payloads: list[Any]) -> None:
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        texts = [p for p in payloads if isinstance(p, str) and p.strip() and _is_unicode(p)]
        if not texts:
            raise DataError("no non-empty training text to learn a tokenizer from", reason="empty_text")
        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        norm = [normalizers.NFKC(), normalizers.Lowercase()] if self.lowercase else [normalizers.NFKC()]
        tok.normalizer = normalizers.Sequence(norm)
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.BpeTrainer(
            vocab_size=self.vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=SPECIALS,
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer=trainer)
        self._tokenizer = tok

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise DataError("the text tokenizer is not trained yet (call fit)", reason="not_fitted")
        return self._tokenizer

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor:
        check_text(payload)
        ids = self.tokenizer.encode(payload).ids[: self.max_length]
        if not ids:
            raise DataError("text has no tokens", reason="empty_text")
        out = torch.full((self.max_length,), PAD_ID, dtype=torch.long)
        out[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out

    def placeholder(self) -> torch.Tensor:
        out = torch.full((self.max_length,), PAD_ID, dtype=torch.long)
        out[0] = 1  # one [UNK] token so that even a placeholder row has a non-empty mask
        return out

    def settings(self) -> dict[str, Any]:
        return {
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "lowercase": self.lowercase,
            "min_frequency": self.min_frequency,
        }

    def save_state(self, directory: Path, name: str) -> None:
        atomic_write_bytes(directory / f"tokenizer-{name}.json", self.tokenizer.to_str().encode())

    def load_state(self, directory: Path, name: str) -> None:
        from tokenizers import Tokenizer

        path = directory / f"tokenizer-{name}.json"
        try:
            self._tokenizer = Tokenizer.from_str(path.read_text(encoding="utf-8"))
        except Exception as e:  # tokenizers raises its own exception types
            raise CheckpointError(f"cannot read tokenizer {path}: {e}") from None

    def encoder_kwargs(self) -> dict[str, Any]:
        return {"vocab_size": self.tokenizer.get_vocab_size(), "max_length": self.max_length}


def check_text(payload: Any) -> None:
    """A ``DataError`` unless ``payload`` is a non-empty, valid Unicode string."""
    if not isinstance(payload, str):
        raise DataError(f"expected text, got {type(payload).__name__}", reason="wrong_type")
    if not payload.strip():
        raise DataError("text is empty", reason="empty_text")
    if not _is_unicode(payload):
        raise DataError(
            "text is not valid Unicode (a lone surrogate, e.g. a JSON escape \\ud800)", reason="bad_text"
        )


def _is_unicode(text: str) -> bool:
    """False for a string with lone surrogates (valid in JSON escapes, not text the tokenizer takes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
