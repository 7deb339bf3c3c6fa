"""Evaluate a model on preprocessed samples: retrieval for every ordered modality pair, zero-shot.

Metric keys (stable): ``retrieval/{q}->{t}/R@{k}``, ``retrieval/{q}->{t}/median_rank``,
``retrieval/{q}->{t}/n_queries``, ``zeroshot/{m}/accuracy``, ``zeroshot/{m}/mean_per_class_recall``;
added: ``retrieval/{q}->{t}/`` ``mean_rank``, ``MRR@10``, ``nDCG@10``, ``MAP@100``, ``precision@k``,
``recall@k`` and provenance counts (:mod:`modalign.evaluation.retrieval`), ``zeroshot/{m}/top5_accuracy``.
:func:`evaluate_detailed` also returns every metric's per-query values (bootstrap intervals) and
its chance level.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import torch

from modalign.data.dataset import SampleSet, collate, split_rows
from modalign.data.manifest import Manifest, cell
from modalign.evaluation.chance import retrieval_chance, zero_shot_chance
from modalign.evaluation.embedded import EmbeddedSplit, check_finite
from modalign.evaluation.positives import KeyPositives
from modalign.evaluation.retrieval import aggregate, counts, retrieval_per_query, retrieval_per_query_both
from modalign.evaluation.zero_shot import (
    class_prototypes,
    confusion_matrix,
    zero_shot_metrics,
    zero_shot_per_sample,
)
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
    check_finite(model, out, samples.ids)
    return out


@dataclass
class Evaluation:
    """Flat metrics, each metric's per-query values (for bootstrap intervals) and chance levels."""

    metrics: dict[str, float] = field(default_factory=dict)
    per_query: dict[str, np.ndarray] = field(default_factory=dict)
    chance: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, tuple[list[Hashable], np.ndarray]] = field(default_factory=dict)

    def add_retrieval_pair(
        self, a: str, b: str, emb_a: Any, emb_b: Any, positives: Any, ks: Sequence[int]
    ) -> None:
        """Both directions ``a -> b`` and ``b -> a`` from one pass over their scores."""
        both = retrieval_per_query_both(emb_a, emb_b, positives, ks)
        for prefix, (per_query, ranking) in zip((f"retrieval/{a}->{b}", f"retrieval/{b}->{a}"), both):
            self.add_ranking(prefix, per_query, ranking, ks)

    def add_retrieval(
        self, prefix: str, queries: Any, candidates: Any, positives: Any, ks: Sequence[int]
    ) -> None:
        """Retrieval metrics of one query -> target direction under ``prefix`` (``retrieval/a->b``)."""
        per_query, ranking = retrieval_per_query(queries, candidates, positives, ks)
        self.add_ranking(prefix, per_query, ranking, ks)

    def add_ranking(
        self, prefix: str, per_query: dict[str, np.ndarray], ranking: Any, ks: Sequence[int]
    ) -> None:
        """Metrics, per-query values and chance levels of one direction's ranking."""
        for name, value in (aggregate(per_query) | counts(ranking)).items():
            self.metrics[f"{prefix}/{name}"] = value
        for name, values in per_query.items():
            if name == "rank":  # 0-based: the median of these is open_clip's median_rank - 1
                self.per_query[f"{prefix}/median_rank"] = values
                self.per_query[f"{prefix}/mean_rank"] = values + 1
            else:
                self.per_query[f"{prefix}/{name}"] = values
        for name, value in retrieval_chance(ranking.n_positives, ranking.n_candidates, ks).items():
            self.chance[f"{prefix}/{name}"] = value


def add_geometry(ev: Evaluation, emb: dict[str, np.ndarray], present: dict[str, np.ndarray]) -> None:
    """``geometry/{m}/uniformity`` per modality and ``geometry/{a}-{b}/...`` per modality pair on
    the rows where both are present (:mod:`modalign.evaluation.geometry`)."""
    from modalign.evaluation.geometry import geometry_metrics, uniformity

    for m, e in emb.items():
        if present[m].sum() >= 2:
            ev.metrics[f"geometry/{m}/uniformity"] = uniformity(e[present[m]])
    for a, b in combinations(emb, 2):
        both = present[a] & present[b]
        for name, value in geometry_metrics(emb[a][both], emb[b][both]).items():
            ev.metrics[f"geometry/{a}-{b}/{name}"] = value
        if f"geometry/{a}-{b}/separability" in ev.metrics:
            ev.chance[f"geometry/{a}-{b}/separability"] = 0.5


def evaluate_samples(
    model: MultimodalModel,
    samples: SampleSet | EmbeddedSplit,
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
    """All metrics of ``model`` on ``samples`` (arguments of :func:`evaluate_detailed`)."""
    return evaluate_detailed(
        model,
        samples,
        match_on=match_on,
        ks=ks,
        label_column=label_column,
        zeroshot_text=zeroshot_text,
        class_prompts=class_prompts,
        batch_size=batch_size,
        emb=emb,
        higher_order=higher_order,
    ).metrics


def evaluate_detailed(
    model: MultimodalModel,
    samples: SampleSet | EmbeddedSplit,
    *,
    match_on: str | None = None,
    ks: Sequence[int] = (1, 5, 10),
    label_column: str | None = None,
    zeroshot_text: str | None = None,
    class_prompts: dict[Hashable, list[str]] | None = None,
    batch_size: int = 256,
    emb: dict[str, np.ndarray] | None = None,
    higher_order: bool = False,
) -> Evaluation:
    """All metrics of ``model`` on ``samples``, with per-query values and chance levels.

    Args:
        match_on: positives share this column's value (kept in ``samples.columns``); None = same id.
        label_column: class labels for zero-shot (in ``samples.columns``); None = no zero-shot.
        zeroshot_text: the text modality that embeds class prompts (default: the first one).
        class_prompts: ``{label: [prompt, ...]}``; required for zero-shot (see ``prompts_by_label``).
        emb: embeddings from :func:`embed_samples`, when already computed (an
            :class:`EmbeddedSplit` brings its own).
        higher_order: with 3+ modalities, also score each modality from all the others together
            with Symile's MIP (keys ``retrieval/{a}+{b}->{t}/...``); for Symile-trained models.
    """
    emb = emb if emb is not None else _embedded(model, samples, batch_size)
    keys = samples.ids if match_on is None else samples.columns[match_on]
    ev = Evaluation()
    for q, t in combinations(model.modalities, 2):  # q -> t and t -> q from the same scores
        qp, tp = samples.present(q).numpy(), samples.present(t).numpy()
        qkeys = [k for k, p in zip(keys, qp) if p]
        tkeys = [k for k, p in zip(keys, tp) if p]
        ev.add_retrieval_pair(q, t, emb[q][qp], emb[t][tp], KeyPositives(qkeys, tkeys), ks)
    if higher_order and len(model.modalities) >= 3:
        for t in model.modalities:
            qs = [m for m in model.modalities if m != t]
            qp = np.logical_and.reduce([samples.present(m).numpy() for m in qs])
            tp = samples.present(t).numpy()
            # Symile's MIP (arXiv 2411.01053, Sec. 3): the element-wise product of the query
            # embeddings dotted with the candidate, so it is scored raw (not re-normalised)
            prod = np.prod(np.stack([emb[m][qp] for m in qs]), axis=0)
            positives = KeyPositives([k for k, p in zip(keys, qp) if p], [k for k, p in zip(keys, tp) if p])
            per_query, ranking = retrieval_per_query(prod, emb[t][tp], positives, ks, normalize=False)
            name = f"retrieval/{'+'.join(qs)}->{t}"
            for metric, value in (aggregate(per_query) | counts(ranking)).items():
                ev.metrics[f"{name}/{metric}"] = value
    add_geometry(
        ev, {m: emb[m] for m in model.modalities}, {m: samples.present(m).numpy() for m in model.modalities}
    )
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
                ev.metrics[f"zeroshot/{m}/{name}"] = value
            for name, values in zero_shot_per_sample(emb[m][keep], y, classes, protos).items():
                ev.per_query[f"zeroshot/{m}/{name}"] = values
            for name, value in zero_shot_chance(len(classes)).items():
                ev.chance[f"zeroshot/{m}/{name}"] = value
            ev.confusion[m] = (classes, confusion_matrix(emb[m][keep], y, classes, protos))
    return ev


def _embedded(
    model: MultimodalModel, samples: SampleSet | EmbeddedSplit, batch_size: int, features: bool = False
) -> dict[str, np.ndarray]:
    if isinstance(samples, SampleSet):
        return embed_samples(model, samples, batch_size, features)
    if features and samples.features is None:
        raise ValueError("this split was embedded without features: embed_streamed(..., features=True)")
    return samples.features if features and samples.features is not None else samples.emb


def manifest_prompts(
    manifest: Manifest, *, split_column: str, split: str | None, text_column: str, label_column: str
) -> dict[Hashable, list[str]]:
    """Class prompts for zero-shot: the distinct texts of each label in ``split`` of a manifest."""
    rows = [manifest.rows[i] for i in split_rows(manifest, split_column, split)]
    return prompts_by_label([cell(r, text_column) for r in rows], [cell(r, label_column) for r in rows])


def prompts_by_label(texts: Sequence[object], labels: Sequence[object]) -> dict[Hashable, list[str]]:
    """Distinct texts of each label (sorted), e.g. class names taken from a training split."""
    found: dict[Hashable, set[str]] = {}
    for text, label in zip(texts, labels):
        if isinstance(text, str) and text.strip() and label is not None:
            found.setdefault(label, set()).add(text)  # type: ignore[arg-type]
    return {label: sorted(v) for label, v in found.items()}


def evaluate_model(
    model: MultimodalModel,
    samples: SampleSet | EmbeddedSplit,
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

    ``samples`` are preprocessed rows (embedded here) or a split already embedded by a streamed
    pass (:func:`~modalign.evaluation.embedded.embed_streamed`, with ``features`` when the fusion
    reads them).

    Args:
        robustness: keywords of :func:`~modalign.evaluation.prediction_eval.evaluate_predictions`
            (``robustness``, ``max_subsets``, ``mcar_rates``, ``mnar_drop``, ``explain_samples``).

    Returns:
        Flat metrics and extras for the report (e.g. ``explanations``; ``_evaluation``, the
        :class:`Evaluation` with per-query values and chance levels, and ``_embeddings`` with the
        sample ids and the ``match_on`` keys: underscore keys are not written to ``report.json``).
    """
    emb = _embedded(model, samples, batch_size)
    metrics: dict[str, float] = {}
    ev = Evaluation()
    if model.aligned:
        ev = evaluate_detailed(
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
        metrics = dict(ev.metrics)
    extras: dict[str, Any] = {}
    if model.fusion_spec is not None:
        from modalign.evaluation.prediction_eval import evaluate_predictions

        fused_in = emb
        if model.fusion_spec.input == "features":
            fused_in = _embedded(model, samples, batch_size, features=True)
        more, extras = evaluate_predictions(model, samples, fused_in, **(robustness or {}))
        metrics.update(more)
    keys = samples.ids if match_on is None else samples.columns[match_on]
    labels = samples.columns.get(label_column) if label_column is not None else None
    present = {m: samples.present(m).numpy() for m in emb}
    extras["_evaluation"] = ev
    extras["_embeddings"] = {
        "emb": emb,
        "present": present,
        "ids": samples.ids,
        "keys": keys,
        "labels": labels,
    }
    return metrics, extras
