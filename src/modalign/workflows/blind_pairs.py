"""``modalign eval --blind-pairs REFERENCE``: CLIP-blind pairs of the test items, scored MMVP-style.

For every modality the evaluated model shares (by name) with a reference model, other than its
text modality: pairs of test items that the model finds near-identical (``cos > hi``) while the
reference finds them different (``cos < lo``) -- the "Eyes Wide Shut" mining with the model in
CLIP's place and the reference in DINOv2's (:func:`~modalign.evaluation.blind_pairs.mine_blind_pairs`)
-- then each pair scored MMVP-style with the item's own text as its statement: both texts must
pick their own item (:func:`~modalign.evaluation.blind_pairs.mmvp_pair_scores`). Items whose texts
are equal never pair (no statement could tell them apart).

Keys: ``blind_pairs/{item}->{text}/score`` (correct pairs / pairs x 100, chance 25) and
``.../n_pairs``; the pairs' ids go to the report's ``meta.blind_pairs``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modalign.data.loading import load_split
from modalign.data.manifest import cell
from modalign.errors import ConfigError


def blind_pair_metrics(
    model: Any,
    reference_dir: Path,
    manifest: Any,
    samples: Any,
    test: dict[str, Any],
    ev: Any,
    *,
    split: str | None,
    split_column: str,
    id_column: str,
    hi: float,
    lo: float,
    max_pairs: int,
    show: bool,
) -> tuple[dict[str, float], dict[str, list[list[str]]]]:
    """Metrics of the mined pairs per shared modality and the pairs as ``[id, id]`` lists.

    Args:
        samples: the evaluated split (a ``SampleSet``); ``test`` its embeddings, the model's
            ``_embeddings`` extras (``emb``, ``present``, ``ids``).
        ev: the :class:`~modalign.evaluation.evaluate.Evaluation` that gets per-pair scores (for
            bootstrap intervals) and the chance level.
        max_pairs: keep the pairs of largest disagreement ``cos_model - cos_reference``.

    Raises:
        ConfigError: the model has no text modality, or shares no other modality with the reference.
    """
    from modalign.evaluation.blind_pairs import mine_blind_pairs, mmvp_pair_scores
    from modalign.evaluation.evaluate import embed_samples
    from modalign.model import load

    reference = load(reference_dir)
    text = next((m for m in model.modalities if model.specs[m].kind == "text"), None)
    shared = [m for m in model.modalities if m != text and m in reference.modalities]
    if text is None or not shared:
        raise ConfigError(
            f"--blind-pairs {reference_dir}: the evaluated model needs a text modality (the "
            f"statements; it has {list(model.modalities)}) and another modality that the reference "
            f"model also has, by name (the reference has {list(reference.modalities)})"
        )
    ref_samples = load_split(
        manifest,
        reference.sources(),
        split,
        split_column=split_column,
        id_column=id_column,
        required=True,
        show_progress=show,
    )
    ref_emb = embed_samples(reference, ref_samples)
    ref_row = {sid: r for r, sid in enumerate(ref_samples.ids)}
    column = model.specs[text].column
    texts = [cell(manifest.rows[r], column) for r in samples.rows]  # each item's statement
    metrics: dict[str, float] = {}
    listed: dict[str, list[list[str]]] = {}
    for m in shared:
        ref_present = ref_samples.present(m).numpy()
        rows = [
            i
            for i, sid in enumerate(test["ids"])
            if sid in ref_row
            and test["present"][m][i]
            and test["present"][text][i]
            and ref_present[ref_row[sid]]
        ]
        items, statements = test["emb"][m][rows], test["emb"][text][rows]
        theirs = ref_emb[m][[ref_row[test["ids"][i]] for i in rows]]
        groups = [texts[i] for i in rows]
        pairs = mine_blind_pairs(items, theirs, hi, lo, top_k=max_pairs, groups=groups)
        scores = mmvp_pair_scores(items, statements, pairs) * 100
        key = f"blind_pairs/{m}->{text}"
        metrics[f"{key}/score"] = float(scores.mean()) if len(pairs) else float("nan")
        metrics[f"{key}/n_pairs"] = float(len(pairs))
        ev.per_query[f"{key}/score"] = scores
        ev.chance[f"{key}/score"] = 25.0
        listed[f"{m}->{text}"] = [[test["ids"][rows[i]], test["ids"][rows[j]]] for i, j in pairs]
    return metrics, listed


def check_thresholds(hi: float, lo: float, max_pairs: int) -> None:
    """Refuse thresholds outside the cosine's range and a non-positive pair cap.

    Raises:
        ConfigError: naming the option and the value.
    """
    for name, v in (("hi", hi), ("lo", lo)):
        if not np.isfinite(v) or not -1.0 <= v <= 1.0:
            raise ConfigError(f"--blind-thresholds: {name} = {v} is not a cosine in [-1, 1]")
    if max_pairs < 1:
        raise ConfigError(f"--blind-max-pairs = {max_pairs}: at least 1 pair is needed")
