"""Raw inputs (files, strings, arrays, ``None`` = absent) of a MultimodalModel, read, collated and
embedded batch by batch on its device, rows back in input order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from modalign.errors import ConfigError, DataError
from modalign.types import EmbeddingBatch, inputs_to

if TYPE_CHECKING:
    from modalign.model import MultimodalModel


def embed_payloads(
    model: MultimodalModel,
    modality: str,
    inputs: Sequence[Any],
    batch_size: int,
    base: Path,
    allow_missing: bool,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, D) float32 embeddings, (N, D) features and (N,) mask of raw inputs, on ``device``.

    Inputs are loaded and collated on the CPU, then each batch moves to ``device`` once
    (None = absent if allowed).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    spec = model.specs[modality]
    # variable-length inputs (a pretrained tokenizer pads per batch): batch texts of similar
    # length together, longest first, and put the rows back in input order at the end
    order = _length_order(inputs) if spec.transform.sort_by_length else list(range(len(inputs)))
    embs, feats, masks = [], [], []
    finite = []  # (B,) per batch, checked once at the end (no device sync per batch)
    for start in range(0, len(inputs), batch_size):
        items: list[torch.Tensor | None] = []
        for row in order[start : start + batch_size]:
            x, t = inputs[row], None
            if x is not None:
                try:
                    t = spec.transform.load(x, base)
                except DataError as e:
                    raise e.located(row=row, column=modality) from None
            if t is None and not allow_missing:
                raise DataError("input is empty/missing", reason="missing", row=row, column=modality)
            items.append(t)
        present = torch.tensor([t is not None for t in items], dtype=torch.bool).to(device)
        x = inputs_to(spec.transform.collate(items), device)
        emb, feat = model.tower(modality).embed(x, present)
        finite.append(emb.isfinite().all(1))
        embs.append(emb.float())
        feats.append(feat.float())
        masks.append(present)
    if not embs:
        empty = torch.zeros(0, model.embed_dim, device=device)
        return empty, empty, torch.zeros(0, dtype=torch.bool, device=device)
    back = torch.argsort(torch.tensor(order, device=device))  # sorted position of each input
    if bad := (~torch.cat(finite)[back]).nonzero()[:, 0].tolist():
        raise model.nonfinite_error(modality, bad, len(inputs), "inputs", "at positions")
    return torch.cat(embs)[back], torch.cat(feats)[back], torch.cat(masks)[back]


def embed_inputs(
    model: MultimodalModel,
    inputs: Mapping[str, Sequence[Any]],
    batch_size: int,
    base_dir: str | Path | None,
    device: torch.device,
) -> EmbeddingBatch:
    """Every modality of N samples ``{modality: [payload or None, ...]}``; one left out is absent."""
    unknown = set(inputs) - set(model.specs)
    if unknown:
        raise DataError(f"unknown modalities {sorted(unknown)}; this model has {model.modalities}")
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) > 1:
        raise DataError(f"modalities have different numbers of samples: {sorted(sizes)}")
    n = sizes.pop() if sizes else 0
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    emb, feats, present = {}, {}, {}
    for m in model.specs:
        values = inputs.get(m, [None] * n)
        emb[m], feats[m], present[m] = embed_payloads(
            model, m, values, batch_size, base, allow_missing=True, device=device
        )
    return EmbeddingBatch(emb, present, feats)


def _length_order(inputs: Sequence[Any]) -> list[int]:
    """Input positions, longest string first (stable); non-strings count as length 0."""
    return sorted(range(len(inputs)), key=lambda i: -len(x) if isinstance(x := inputs[i], str) else 0)
