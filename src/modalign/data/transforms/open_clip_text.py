"""Text processor of an open_clip model: open_clip's own tokenizer at the model's context length.

``load`` gives the (context_length,) int64 token ids of one text as open_clip's tokenizer returns
them (start and end tokens, zero padding; a longer text is truncated with its end-of-text token
kept). The tokenizer is the one ``open_clip.get_tokenizer`` picks: for a built-in model name its own
choice, else the config's ``hf_tokenizer_name`` (a local directory; nothing is downloaded) or the
CLIP BPE tokenizer open_clip ships, with the config's ``tokenizer_kwargs``. The settings keep the
whole model config, so a saved model rebuilds the tokenizer and the tower without any file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from modalign.data.transforms.base import Transform
from modalign.data.transforms.text import check_text
from modalign.errors import ConfigError


class OpenCLIPTextTransform(Transform):
    """Tokenise with open_clip's tokenizer (see module docstring).

    Args:
        model_cfg: the open_clip model config (its ``text_cfg`` names the tokenizer and context length).
        model: the built-in model name, when the model is one.
    """

    kind = "text"
    processor = "open_clip_text"

    def __init__(self, model_cfg: dict[str, Any], model: str | None = None):
        self.model_cfg = model_cfg
        self.model = model
        text_cfg = model_cfg.get("text_cfg", {})
        self.context_length = int(text_cfg.get("context_length", 77))
        self._tokenizer: Any = None

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from modalign.offline import offline_import

            oc = offline_import("open_clip", extra="vision")
            text_cfg = self.model_cfg.get("text_cfg", {})
            kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
            try:
                if self.model is not None:
                    self._tokenizer = oc.get_tokenizer(self.model)
                elif text_cfg.get("hf_tokenizer_name"):
                    self._tokenizer = oc.tokenizer.HFTokenizer(
                        text_cfg["hf_tokenizer_name"],
                        context_length=self.context_length,
                        tokenizer_mode=text_cfg.get("tokenizer_mode"),
                        **kwargs,
                    )
                else:
                    self._tokenizer = oc.tokenizer.SimpleTokenizer(
                        context_length=self.context_length, **kwargs
                    )
            except Exception as e:  # hub and tokenizer libraries raise many types offline
                raise ConfigError(
                    f"cannot build the open_clip tokenizer of this model offline: {e}"
                ) from None
        return self._tokenizer

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor:
        check_text(payload)
        return self.tokenizer([payload])[0].to(torch.long)

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.context_length, dtype=torch.long)

    def settings(self) -> dict[str, Any]:
        return {"model_cfg": self.model_cfg, "model": self.model}

    def encoder_kwargs(self) -> dict[str, Any]:
        return {"model_cfg": self.model_cfg, "context_length": self.context_length}
