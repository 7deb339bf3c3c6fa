"""Evaluate a model on preprocessed samples: retrieval for every ordered modality pair, zero-shot.

Metric keys (stable): ``retrieval/{q}->{t}/R@{k}``, ``retrieval/{q}->{t}/median_rank``,
``retrieval/{q}->{t}/n_queries``, ``zeroshot/{m}/accuracy``, ``zeroshot/{m}/mean_per_class_recall``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from itertools import permutations
from typing import Any

import numpy as np
import torch

from modalign.data.dataset import SampleSet, collate, split_rows
from modalign.data.manifest import Manifest
from modalign.evaluation.retrieval import best_positive_ranks, higher_order_ranks, retrieval_metrics
from modalign.evaluation.zero_shot import class_prototypes, zero_shot_metrics
from modalign.model import MultimodalModel


@torch.no_grad()
def embed_samples(
    model: MultimodalModel, samples: SampleSet, batch_size: int = 256, features: bool = False
) -> dict[str, np.ndarray]:
    """(N, D) embeddings (or, with ``features``, the unnormalised features) of every modality of
    ``samples``; absent rows are zeros. Batches run on the model's device; the arrays are on the CPU.

    Raises:
        NonFiniteError: rows of a modality embed to NaN/inf (names the modality, how many rows and
            the first sample ids); they would otherwise score as ties or hits.
    """
    model.eval()
    sources, device = model.sources(), model.device
    chunks: dict[str, list[np.ndarray]] = {s.name: [] for s in sources}
    for start in range(0, len(samples), batch_size):
        idx = list(range(start, min(start + batch_size, len(samples))))
        out = model(collate(samples, idx, sources).to(device))
        rows = out.features if features and out.features is not None else out.emb
        for name, e in rows.items():
            chunks[name].append(e.float().cpu().numpy())
    out = {
        n: np.concatenate(c) if c else np.zeros((0, model.embed_dim), np.float32) for n, c in chunks.items()
    }
    for name, e in out.items():
        if bad := np.flatnonzero(~np.isfinite(e).all(1)).tolist():
            ids = [samples.ids[i] for i in bad]
            raise model.nonfinite_error(name, ids, len(samples), "rows", "sample ids")
    return out


def evaluate_samples(
    model: MultimodalModel,
    samples: SampleSet,
    *,
    match_on: str | None = None,
    ks: Sequence[int] = (1, 5, 10),
    label_column: str | None = None,
    zeroshot_text: str | None = None,
    class_prompts: dict[Hashable, list[str]] | None = None,
    batch_size: int = 256,
    emb: dict[str, np.ndarray] | None = None,
    higher_order: bool = False,
) -> dict[str, float]:
    """All metrics of ``model`` on ``samples``.

    Args:
        match_on: positives share this column's value (kept in ``samples.columns``); None = same id.
        label_column: class labels for zero-shot (in ``samples.columns``).
        zeroshot_text: the text modality that embeds class prompts (default: the first one).
        class_prompts: ``{label: [prompt, ...]}``; required for zero-shot (see ``prompts_by_label``).
        emb: embeddings from :func:`embed_samples`, when already computed.
        higher_order: with 3+ modalities, also score each modality from all the others together
            with Symile's MIP (keys ``retrieval/{a}+{b}->{t}/...``); for Symile-trained models.
    """
    emb = emb if emb is not None else embed_samples(model, samples, batch_size)
    keys = samples.ids if match_on is None else samples.columns[match_on]
    out: dict[str, float] = {}
    for q, t in permutations(model.modalities, 2):
        qp, tp = samples.present(q).numpy(), samples.present(t).numpy()
        qkeys = [k for k, p in zip(keys, qp) if p]
        tkeys = [k for k, p in zip(keys, tp) if p]
        ranks = best_positive_ranks(torch.from_numpy(emb[q][qp]), torch.from_numpy(emb[t][tp]), qkeys, tkeys)
        for name, value in retrieval_metrics(ranks, ks).items():
            out[f"retrieval/{q}->{t}/{name}"] = value
        out[f"retrieval/{q}->{t}/n_queries"] = float((ranks >= 0).sum())
    if higher_order and len(model.modalities) >= 3:
        for t in model.modalities:
            qs = [m for m in model.modalities if m != t]
            qp = np.logical_and.reduce([samples.present(m).numpy() for m in qs])
            tp = samples.present(t).numpy()
            ranks = higher_order_ranks(
                [torch.from_numpy(emb[m][qp]) for m in qs],
                torch.from_numpy(emb[t][tp]),
                [k for k, p in zip(keys, qp) if p],
                [k for k, p in zip(keys, tp) if p],
            )
            name = "+".join(qs)
            for metric, value in retrieval_metrics(ranks, ks).items():
                out[f"retrieval/{name}->{t}/{metric}"] = value
            out[f"retrieval/{name}->{t}/n_queries"] = float((ranks >= 0).sum())
    text = zeroshot_text or next((m for m in model.modalities if model.specs[m].kind == "text"), None)
    if label_column is not None and text is not None and class_prompts:
        labels = list(class_prompts)
        prompts = [p for c in labels for p in class_prompts[c]]
        prompt_labels = [c for c in labels for _ in class_prompts[c]]
        classes, protos = class_prototypes(model.encode(prompts, modality=text), prompt_labels)
        y_all = samples.columns[label_column]
        for m in model.modalities:
            if m == text:
                continue
            keep = samples.present(m).numpy() & np.asarray([y is not None for y in y_all])
            y = [v for v, k in zip(y_all, keep) if k]
            for name, value in zero_shot_metrics(emb[m][keep], y, classes, protos).items():
                out[f"zeroshot/{m}/{name}"] = value
    return out


def manifest_prompts(
    manifest: Manifest, *, split_column: str, split: str | None, text_column: str, label_column: str
) -> dict[Hashable, list[str]]:
    """Class prompts for zero-shot: the distinct texts of each label in ``split`` of a manifest."""
    rows = [manifest.rows[i] for i in split_rows(manifest, split_column, split)]
    return prompts_by_label([r.get(text_column) for r in rows], [r.get(label_column) for r in rows])


def prompts_by_label(texts: Sequence[object], labels: Sequence[object]) -> dict[Hashable, list[str]]:
    """Distinct texts of each label (sorted), e.g. class names taken from a training split."""
    found: dict[Hashable, set[str]] = {}
    for text, label in zip(texts, labels):
        if isinstance(text, str) and text.strip() and label is not None:
            found.setdefault(label, set()).add(text)  # type: ignore[arg-type]
    return {label: sorted(v) for label, v in found.items()}


def evaluate_model(
    model: MultimodalModel,
    samples: SampleSet,
    *,
    match_on: str | None = None,
    ks: Sequence[int] = (1, 5, 10),
    label_column: str | None = None,
    zeroshot_text: str | None = None,
    class_prompts: dict[Hashable, list[str]] | None = None,
    batch_size: int = 256,
    robustness: dict[str, Any] | None = None,
    higher_order: bool = False,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Every metric that applies to ``model``: retrieval, zero-shot and, with fusion, prediction.

    Args:
        robustness: keywords of :func:`~modalign.evaluation.prediction_eval.evaluate_predictions`
            (``robustness``, ``max_subsets``, ``mcar_rates``, ``mnar_drop``, ``explain_samples``).

    Returns:
        Flat metrics and extras (e.g. ``explanations``) for the report.
    """
    emb = embed_samples(model, samples, batch_size)
    metrics: dict[str, float] = {}
    if model.aligned:
        metrics = evaluate_samples(
            model,
            samples,
            match_on=match_on,
            ks=ks,
            label_column=label_column,
            zeroshot_text=zeroshot_text,
            class_prompts=class_prompts,
            emb=emb,
            higher_order=higher_order,
        )
    extras: dict[str, Any] = {}
    if model.fusion_spec is not None:
        from modalign.evaluation.prediction_eval import evaluate_predictions

        fused_in = emb
        if model.fusion_spec.input == "features":
            fused_in = embed_samples(model, samples, batch_size, features=True)
        more, extras = evaluate_predictions(model, samples, fused_in, **(robustness or {}))
        metrics.update(more)
    return metrics, extras
