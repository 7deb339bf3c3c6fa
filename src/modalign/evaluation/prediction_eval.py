"""Prediction-task evaluation of a fusion model: metrics, robustness to missing modalities, explanations.

Everything runs on embeddings computed once: dropping a modality only changes the ``present`` masks
fed to the fusion module, so the 2^M subsets, the MCAR curve and the MNAR scenario cost one fusion
pass each. Keys: ``predict/{task}/{metric}``, ``robustness/subset/{m1+m2}/{task}/{metric}``,
``robustness/mcar/{rate}/{task}/{metric}``, ``robustness/mnar/{task}/{metric}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from modalign.data.dataset import SampleSet
from modalign.evaluation.embedded import EmbeddedSplit
from modalign.evaluation.prediction import evaluate_tasks
from modalign.evaluation.robustness import MCAR_RATES, mcar_curve, mnar_evaluation, subset_table
from modalign.model import MultimodalModel
from modalign.tasks import encode_targets
from modalign.types import EmbeddingBatch


def evaluate_predictions(
    model: MultimodalModel,
    samples: SampleSet | EmbeddedSplit,
    emb: Mapping[str, np.ndarray],
    *,
    robustness: bool = True,
    max_subsets: int = 64,
    mcar_rates: Sequence[float] = MCAR_RATES,
    mnar_drop: Mapping[str, Mapping[Any, float]] | None = None,
    explain_samples: int = 3,
    seed: int = 0,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics (flat keys) and extras (``explanations``: MultiModN per-step predictions).

    ``emb`` holds what the fusion takes: embeddings, or features with ``fusion.input=features``.
    """
    spec = model.fusion_spec
    assert spec is not None
    tasks = spec.tasks
    targets = encode_targets(tasks, samples.columns)
    present = {m: samples.present(m).numpy() for m in model.modalities}

    @torch.no_grad()
    def predict(inputs: Mapping[str, np.ndarray], masks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        model.eval()
        x = {m: torch.from_numpy(np.asarray(v)) for m, v in inputs.items()}
        batch = EmbeddingBatch(x, {m: torch.from_numpy(np.asarray(masks[m], dtype=bool)) for m in x}, x)
        probs = model.task_probabilities(model.fuse(batch), batch.present)
        return {k: v.cpu().numpy() for k, v in probs.items()}

    metrics = {f"predict/{k}": v for k, v in evaluate_tasks(tasks, predict(emb, present), targets).items()}
    if robustness:
        for row in subset_table(predict, emb, tasks, targets, present, cap=max_subsets, seed=seed):
            name = "+".join(row.pop("modalities"))
            metrics.update({f"robustness/subset/{name}/{k}": v for k, v in row.items()})
        for row in mcar_curve(predict, emb, tasks, targets, present, rates=mcar_rates, seed=seed):
            rate = row.pop("rate")
            metrics.update({f"robustness/mcar/{rate:.1f}/{k}": v for k, v in row.items()})
        if mnar_drop:
            labels = np.asarray(samples.columns[tasks[0].label_column], dtype=object)
            res = mnar_evaluation(predict, emb, tasks, targets, labels, mnar_drop, present, seed=seed)
            metrics.update({f"robustness/mnar/{k}": v for k, v in res.items()})
    extras: dict[str, Any] = {}
    if explain_samples > 0 and model.fusion_spec is not None and _has_steps(model):
        rows = []
        for i in range(min(explain_samples, len(samples))):
            x = {m: torch.from_numpy(emb[m][i : i + 1]) for m in emb}
            one = EmbeddingBatch(x, {m: torch.from_numpy(present[m][i : i + 1]) for m in emb}, x)
            rows.append({"id": samples.ids[i], **model.explain_embedded(one)})
        extras["explanations"] = rows
    return metrics, extras


def _has_steps(model: MultimodalModel) -> bool:
    return model.fusion_spec is not None and model.fusion_spec.name == "multimodn"
