"""A split embedded in one streamed pass: what evaluation needs, without the decoded media.

With ``data.source: stream`` (or ``auto`` above ``data.stream_above``) the test split of a run and
the split of ``modalign eval`` are read through :class:`~modalign.data.sources.stream.StreamedSamples`:
DataLoader workers load batch after batch, the model embeds each, and only the embeddings, the
presence masks and the kept columns stay (``(N, D)`` floats per modality). Rows that fail to load
are left out and counted by reason, as :func:`~modalign.data.loading.load_split` leaves them out,
so the metrics equal those of the in-memory path (the batches hold the same rows unless a row
fails, which only moves float32 rounding).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from modalign.data.sources.stream import StreamedSamples
from modalign.errors import DataError
from modalign.model import MultimodalModel


@dataclass
class EmbeddedSplit:
    """The loaded rows of a split after their embedding pass.

    Attributes:
        ids, rows: sample ids and manifest row numbers of the rows that loaded.
        columns: kept columns (labels, match keys), ``columns[col][i]``.
        presence: modality -> (N,) bool. emb: modality -> (N, D) embeddings (absent rows: the
            model's output for its placeholder, never scored).
        features: modality -> (N, F) unnormalised features, when asked for (fusion on features).
        skipped: rows left out per reason.
    """

    ids: list[str]
    rows: list[int]
    columns: dict[str, list[Any]]
    presence: dict[str, np.ndarray]
    emb: dict[str, np.ndarray]
    features: dict[str, np.ndarray] | None = None
    skipped: Counter[str] = field(default_factory=Counter)

    def __len__(self) -> int:
        return len(self.ids)

    def present(self, name: str) -> torch.Tensor:
        return torch.from_numpy(self.presence[name])


@torch.no_grad()
def embed_streamed(
    model: MultimodalModel, samples: StreamedSamples, batch_size: int = 256, features: bool = False
) -> EmbeddedSplit:
    """Embed every row of ``samples`` batch by batch (workers load, the model embeds, media go).

    Raises:
        DataError: rows were selected but none loaded (names the reasons).
        NonFiniteError: rows of a modality embed to NaN/inf (as :func:`embed_samples`).
    """
    model.eval()
    n, device = len(samples), model.device
    plan = ((start, list(range(start, min(start + batch_size, n)))) for start in range(0, n, batch_size))
    kept: list[int] = []
    emb: dict[str, list[np.ndarray]] = {m: [] for m in model.modalities}
    feats: dict[str, list[np.ndarray]] = {m: [] for m in model.modalities}
    present: dict[str, list[np.ndarray]] = {m: [] for m in model.modalities}
    for start, batch in samples.batches(plan):
        ok = [k for k in range(len(batch)) if start + k not in samples.failed]  # failed: left out
        kept += [start + k for k in ok]
        out = model(batch.to(device))
        for m in model.modalities:
            emb[m].append(out.emb[m][ok].float().cpu().numpy())
            present[m].append(batch.present[m][ok].numpy())
            if features:  # as embed_samples: the embeddings when the model has no features
                rows = out.features if out.features is not None else out.emb
                feats[m].append(rows[m][ok].float().cpu().numpy())
    if n and not kept:
        reasons = ", ".join(f"{r}: {k}" for r, k in samples.skipped.most_common())
        raise DataError(f"no usable rows: all {n} were skipped ({reasons})", reason="no_usable_rows")
    ids = [samples.ids[k] for k in kept]
    out_emb = {m: _stacked(e, model.embed_dim) for m, e in emb.items()}
    check_finite(model, out_emb, ids)
    return EmbeddedSplit(
        ids=ids,
        rows=[samples.rows[k] for k in kept],
        columns={c: [v[k] for k in kept] for c, v in samples.columns.items()},
        presence={m: np.concatenate(p) if p else np.zeros(0, bool) for m, p in present.items()},
        emb=out_emb,
        features={m: _stacked(f, 0) for m, f in feats.items()} if features else None,
        skipped=Counter(samples.skipped),
    )


def check_finite(model: MultimodalModel, emb: dict[str, np.ndarray], ids: list[str]) -> None:
    """Raise :class:`NonFiniteError` naming the first sample ids whose embedding is NaN/inf."""
    for name, e in emb.items():
        if bad := np.flatnonzero(~np.isfinite(e).all(1)).tolist():
            raise model.nonfinite_error(name, [ids[i] for i in bad], len(ids), "rows", "sample ids")


def _stacked(chunks: list[np.ndarray], width: int) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros((0, width), np.float32)
