"""``modalign init``'s choice of objective, fusion task and trainer settings, from the modalities it
found, the label and the number of training rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from modalign.data.manifest import Manifest
from modalign.errors import ConfigError
from modalign.workflows.init_plan import Label, Plan, column_values, identifier, pow2

SMALL_FROM_ROWS = 5000  # training rows from which encoders use the "small" preset


def choose_task(
    plan: Plan,
    m: Manifest,
    mods: dict[str, dict[str, Any]],
    label: Label | None,
    n_train: int,
    manifest: str | Path,
) -> None:
    raw = plan.raw
    if not mods:
        raise ConfigError(
            f"no column of {manifest} can be a modality (see the reasons above): a modality is a "
            "column of image/audio file paths, free text, numbers, categories or lists of numbers"
        )
    kinds = {s["kind"] for s in mods.values()}
    features_only = kinds <= {"tabular"}
    predict = label is not None and (len(mods) == 1 or features_only)
    if len(mods) == 1 and not predict:
        (only,) = mods
        raise ConfigError(
            f"only one modality ({only}) and no label column: nothing to align or predict; name a "
            f"label with --label COLUMN, or add a second modality column"
        )
    small = n_train >= SMALL_FROM_ROWS
    for name, spec in mods.items():
        if spec["kind"] in ("image", "audio", "text") and small:  # preset before transform
            mods[name] = {**{k: v for k, v in spec.items() if k != "transform"}, "preset": "small"}
            mods[name]["transform"] = spec["transform"]
    if label is not None and (predict or label.kind == "multiclass"):
        raw["data"]["label_column"] = label.column
        plan.note(("data", "label_column"), f"{label.n_classes} distinct values")
    epochs = 50 if predict else 30
    batch = pow2(n_train / 8, 8, 128 if predict else 256)
    if predict and label is not None:
        raw["model"] = {"embed_dim": 32}
        raw["objectives"] = []
        task = {"name": identifier(label.column), "column": label.column, "kind": label.kind}
        if task["name"] == label.column:
            del task["column"]
        raw["fusion"] = {"name": "concat", "tasks": [task]}
        why = "one modality" if len(mods) == 1 else "the modalities are all tabular"
        plan.note(
            ("objectives",),
            f"{why} and there is a label: a prediction task, no contrastive objective",
        )
        plan.note(
            ("fusion",),
            f"concat fusion (absent modalities contribute a learned vector) and a {label.kind} head",
        )
    else:
        raw["model"] = {"embed_dim": 128 if small else 64}
        raw["objectives"] = [{"name": "clip", "weight": 1.0}]
        plan.note(
            ("objectives",),
            f"{len(mods)} modalities: symmetric InfoNCE over every pair; it needs large batches, "
            f"{batch} rows here (see `modalign list objectives` for the others)",
        )
        raw["eval"] = {"match_on": match_on_column(m, mods, label)}
        if raw["eval"]["match_on"] is not None:
            plan.note(
                ("eval", "match_on"),
                "values repeat across rows (e.g. one text per class): a retrieval hit is any row of "
                "the same label, not only the same row",
            )
    steps = min(5000, max(100, 50 * math.ceil(epochs * n_train / batch / 50)))
    every = max(10, steps // 5)
    raw["trainer"] = {
        "max_steps": steps,
        "batch_size": batch,
        "lr": 0.001 if small else 0.002,
        "weight_decay": 0.05,
        "warmup_steps": min(100, steps // 10),
        "checkpoint_every": every,
        "val_every": every,
        "select_best": raw["data"]["val_split"] is not None,
        "seed": 0,
    }
    plan.note(
        ("trainer",),
        f"{n_train} training rows: batches of {batch}, {steps} steps (about {epochs} epochs)"
        + (", keeping the weights of the lowest validation loss" if raw["data"]["val_split"] else ""),
    )
    order = ("data", "modalities", "model", "objectives", "fusion", "trainer", "eval")
    plan.raw = {key: raw[key] for key in order if key in raw}


def match_on_column(m: Manifest, mods: dict[str, dict[str, Any]], label: Label | None) -> str | None:
    if label is None or label.kind != "multiclass":
        return None
    for name, spec in mods.items():
        if spec["kind"] in ("text", "image", "audio"):
            values = column_values(m.rows, spec.get("column", name))
            if len({str(v) for v in values}) < 0.9 * len(values):
                return label.column
    return None
