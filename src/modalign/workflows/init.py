"""``modalign init``: a commented experiment config inferred from a manifest.

Every column is profiled over all rows, and a few of the files a column names are decoded. Each
column becomes one modality (image or audio files, free text, a list of numbers), the sample id,
the split, the label, one feature of a single tabular modality that groups the scalar numbers and
categories, or is left out, always with the reason. The objective and the trainer follow from the
modalities and the number of training rows: contrastive alignment (``clip``) for two or more
modalities, a fusion task when the data is tabular only (or a single modality) and has a label.

The result is validated by the config schema before it is written; the config is YAML with a
comment above every inferred choice. The recipe reads top to bottom here; the working state is in
``init_plan``, the file probes in ``init_media`` and the commented YAML in ``init_render``.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modalign.config import load_config
from modalign.data.loading import open_manifest
from modalign.data.manifest import Manifest, cell, is_missing
from modalign.errors import ConfigError
from modalign.io import atomic_write_bytes
from modalign.workflows.init_media import (
    inline_suffix,
    probe_audio,
    probe_image,
    probe_list_column,
    probe_series_files,
    text_modality,
)
from modalign.workflows.init_plan import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    SERIES_SUFFIXES,
    ColumnFinding,
    InitResult,
    Label,
    Plan,
    as_number,
    column_values,
    file_suffix,
    identifier,
    short,
    unique_name,
    value_type,
)
from modalign.workflows.init_render import header, render
from modalign.workflows.init_task import choose_task

LABEL_NAMES = ("label", "labels", "class", "target", "y", "category", "diagnosis", "outcome")
TEXT_NAMES = ("text", "caption", "captions", "description", "sentence", "title", "transcript", "prompt")
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}
SPLIT_COLUMNS = ("split", "fold", "subset", "partition", "set")


def infer_config(
    manifest: str | Path,
    archive: str | Path | None = None,
    *,
    label: str | None = None,
    skip: Sequence[str] = (),
    files_per_column: int = 16,
    out: str | Path | None = None,
) -> InitResult:
    """Infer a config that trains on ``manifest`` (extracted from ``archive`` first when needed).

    Args:
        label: the label column; default: the first column named like one (``label``, ``class``,
            ``target``, ...) holding few distinct values.
        skip: columns to leave out.
        files_per_column: files decoded per file column (spread over the rows).
        out: where the config will be written (named in its header comment).

    Raises:
        DataError: the manifest cannot be read.
        ConfigError: nothing to train (no usable column, or one modality and no label), an unknown
            ``label``/``skip`` column, or no training split; the message says what to change.
    """
    m = open_manifest(Path(manifest), None if archive is None else Path(archive))
    if not m.rows:
        raise ConfigError(f"{manifest} has no rows: nothing to infer a config from")
    columns = _columns(m.rows)
    for c in [*skip, *([] if label is None else [label])]:
        if c not in columns:
            raise ConfigError(f"column {c!r} is not in {manifest}; its columns: {', '.join(columns)}")
    plan = Plan({"data": {"manifest": str(manifest)}})
    if archive is not None:
        plan.raw["data"]["archive"] = str(archive)
        plan.note(("data", "archive"), "extracted next to itself when the manifest does not exist yet")
    for c in skip:
        plan.found(c, "not used", "--skip")
    todo = [c for c in columns if c not in skip]
    todo = _roles(plan, m, todo)
    split_column = plan.raw["data"]["split_column"]
    train_value = plan.raw["data"]["train_split"]
    train_rows = [r for r in m.rows if r.get(split_column) == train_value]
    todo, label_info = _label(plan, m, todo, label)
    modalities = _modalities(plan, m, todo, files_per_column)
    choose_task(plan, m, modalities, label_info, len(train_rows), manifest)
    cfg = copy.deepcopy(plan.raw)
    load_config(raw=cfg)  # the schema's checks: a bug here must not reach the user's file
    notes = [f"{p[0]}: {c}" for p, cs in plan.comments.items() if len(p) == 1 for c in cs]
    top = header(manifest, m, plan, "CONFIG.yaml" if out is None else str(out))
    text = top + "\n".join(render(plan.raw, plan.comments)) + "\n"
    return InitResult(plan.raw, text, plan.findings, notes, len(m.rows))


def write_config(result: InitResult, out: str | Path, *, force: bool = False) -> Path:
    """Write the commented config atomically; an existing file is kept unless ``force``."""
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"{out} exists; choose another --out or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, result.text.encode("utf-8"))
    return out


def default_config_path(manifest: str | Path) -> Path:
    """``NAME.yaml`` in the working directory, NAME being the manifest's folder (or its stem)."""
    p = Path(manifest)
    parent = p.resolve().parent
    name = p.stem if parent == Path.cwd().resolve() else parent.name
    return Path(identifier(name) + ".yaml")


# --- roles: id, split, label ----------------------------------------------------------------------


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _roles(plan: Plan, m: Manifest, todo: list[str]) -> list[str]:
    """Pick the id and split columns; returns the columns still to place."""
    data = plan.raw["data"]
    if "id" in todo:
        plan.found("id", "id", "named id")
    else:
        plan.found("(none)", "id", "no id column: samples are named by their row number")
    split = next((c for c in SPLIT_COLUMNS if c in todo and _split_values(column_values(m.rows, c))), None)
    if split is None:
        raise ConfigError(
            f"{m.path} has no split column: add a column 'split' with the values train, val and test "
            "(e.g. 80/10/10 of the rows at random); training fits on 'train' and reports on 'test'"
        )
    counts = Counter(str(v) for v in column_values(m.rows, split))
    found = _split_values(list(counts))
    data.update({"split_column": split, "train_split": found["train"]})
    data["val_split"] = found.get("val")
    data["test_split"] = found.get("test")
    shown = ", ".join(f"{k} {n}" for k, n in counts.most_common())
    plan.found(split, "split", f"split names ({shown})")
    plan.note(("data", "split_column"), f"rows per split: {shown}")
    if "val" not in found:
        plan.note(("data", "val_split"), "no validation split found: no validation loss")
    if "test" not in found:
        plan.note(("data", "test_split"), "no test split found: no report after training")
    return [c for c in todo if c not in ("id", split)]


def _split_values(values: list[Any]) -> dict[str, str]:
    names = {str(v).lower(): str(v) for v in set(map(str, values))}
    found = {role: names[n] for role, options in SPLIT_NAMES.items() for n in options if n in names}
    return found if "train" in found and len(names) <= 5 else {}


def _label(plan: Plan, m: Manifest, todo: list[str], label: str | None) -> tuple[list[str], Label | None]:
    candidates = [label] if label is not None else [c for c in todo if c.lower() in LABEL_NAMES]
    for c in candidates:
        values = column_values(m.rows, c)
        if not values or any(isinstance(v, (list, dict)) for v in values):
            if label is not None:
                raise ConfigError(f"--label {c}: the column is empty or holds lists/objects, not labels")
            continue
        distinct = len({str(v) for v in values})
        numbers = [as_number(v) for v in values]
        many = distinct > max(50, len(values) // 10)
        if all(x is not None for x in numbers) and many:
            kind, why = "regression", f"{distinct} distinct numbers: a regression target"
        elif many and label is None:
            continue  # a free-text "category" or "title" is not a label
        else:
            kind, why = "multiclass", f"{distinct} classes"
        plan.found(c, "label", f"{'--label' if label is not None else 'named like a label'}; {why}")
        return [x for x in todo if x != c], Label(c, kind, distinct)
    return todo, None


# --- modalities -----------------------------------------------------------------------------------


@dataclass
class _Tabular:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


def _modalities(plan: Plan, m: Manifest, todo: list[str], k: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    tab = _Tabular()
    texts: list[str] = []
    for column in todo:
        values = column_values(m.rows, column)
        for c, vs in _flatten(column, values):
            name = unique_name(identifier(c), out)
            spec = _one_column(plan, m, c, name, vs, tab, k)
            if spec is None:
                continue
            out[name] = spec if name == c else {**spec, "column": c}
            if spec["kind"] == "text":
                texts.append(name)
    for name in _redundant_texts(plan, m, out, texts):
        del out[name]
    if tab.numeric or tab.categorical:
        name = unique_name("tabular", out)
        transform: dict[str, Any] = {"numeric": tab.numeric, "categorical": tab.categorical}
        out[name] = {"kind": "tabular", "transform": transform}
        parts = []
        if tab.numeric:
            parts.append(f"numbers {', '.join(tab.numeric)} (standardised with training statistics)")
        if tab.categorical:
            parts.append(f"categories {', '.join(tab.categorical)} (indexed)")
        plan.note(("modalities", name), "the scalar columns in one modality: " + "; ".join(parts))
        plan.findings = [
            ColumnFinding(f.column, f"feature of {name}", f.reason) if f.use == "feature" else f
            for f in plan.findings
        ]
    plan.raw["modalities"] = out
    return out


def _flatten(column: str, values: list[Any]) -> list[tuple[str, list[Any]]]:
    """``[(column, values)]``, or one entry per leaf field when the values are objects."""
    if not values or not all(isinstance(v, dict) for v in values):
        return [(column, values)]
    keys = _columns(values)
    out = []
    for key in keys:
        out += _flatten(f"{column}.{key}", [v[key] for v in values if not is_missing(v.get(key))])
    return out


def _one_column(
    plan: Plan,
    m: Manifest,
    c: str,
    name: str,
    values: list[Any],
    tab: _Tabular,
    k: int,
) -> dict[str, Any] | None:
    """The modality ``name`` of column ``c`` (None when it is a tabular feature or not used)."""
    n = len(m.rows)
    if not values:
        plan.found(c, "not used", "empty in every row")
        return None
    if len({repr(v) for v in values}) == 1 and len(values) == n:
        plan.found(c, "not used", f"the same value in every row ({short(values[0])})")
        return None
    types = {value_type(v) for v in values}
    if len(types) > 1:
        plan.found(c, "not used", f"mixed types ({', '.join(sorted(types))}): make it one type")
        return None
    (t,) = types
    present = f"present in {len(values)} of {n} rows" if len(values) < n else ""
    if t == "list":
        return probe_list_column(plan, c, name, values, present)
    if t in ("number", "bool"):
        _scalar(plan, c, values, tab, t)
        return None
    if t == "InlineFile":  # a Hugging Face Image/Audio column: the bytes tell the format
        suffix = inline_suffix(values)
    elif t != "str":
        plan.found(c, "not used", f"values of type {t}")
        return None
    else:
        suffix = file_suffix(values)
    if suffix in IMAGE_SUFFIXES:
        return probe_image(plan, m, c, name, values, k, suffix)
    if suffix in AUDIO_SUFFIXES:
        return probe_audio(plan, m, c, name, values, k, suffix)
    if suffix in SERIES_SUFFIXES:
        return probe_series_files(plan, m, c, name, values, k, suffix)
    if t == "InlineFile":
        plan.found(c, "not used", f"file bytes in no format a transform reads ({suffix or 'unknown'})")
        return None
    if suffix is not None:
        plan.found(
            c,
            "not used",
            f"paths of {suffix} files: no transform reads them (images: {' '.join(IMAGE_SUFFIXES)}; "
            f"audio: {' '.join(AUDIO_SUFFIXES)}; time series: {' '.join(SERIES_SUFFIXES)})",
        )
        return None
    if all(as_number(v) is not None for v in values):  # CSV cells are strings
        _scalar(plan, c, values, tab, "number")
        return None
    spaced = sum(any(ch.isspace() for ch in v.strip()) for v in values) / len(values)
    distinct = len(set(values))
    if c.lower() in TEXT_NAMES or (spaced >= 0.2 and distinct >= 0.1 * len(values)):
        why = f"named {c}" if c.lower() in TEXT_NAMES else f"{spaced:.0%} of the values have spaces"
        plan.found(c, f"modality {name}", f"free text ({why}; {distinct} distinct) {present}".strip())
        return text_modality(plan, c, name, values)
    if distinct > len(values) // 2:
        plan.found(c, "not used", f"{distinct} distinct single words in {len(values)} rows: an identifier")
        return None
    tab.categorical.append(c)
    plan.found(c, "feature", f"a category ({distinct} distinct values)")
    return None


def _scalar(plan: Plan, c: str, values: list[Any], tab: _Tabular, t: str) -> None:
    distinct = len({str(v) for v in values})
    if t == "bool":
        tab.categorical.append(c)
        plan.found(c, "feature", "true/false: a category")
    else:
        tab.numeric.append(c)
        plan.found(c, "feature", f"a number ({distinct} distinct values)")


def _redundant_texts(plan: Plan, m: Manifest, mods: dict[str, Any], texts: list[str]) -> list[str]:
    """Text modalities that are a near-copy of another (contained in it in 95% of rows)."""
    drop: list[str] = []
    for a in texts:
        for b in texts:
            if a == b or b in drop:
                continue
            ca, cb = mods[a].get("column", a), mods[b].get("column", b)
            cells = [(cell(r, ca), cell(r, cb)) for r in m.rows]
            pairs = [(x, y) for x, y in cells if isinstance(x, str) and isinstance(y, str)]
            inside = sum(x.lower() in y.lower() for x, y in pairs)
            longer = sum(len(y) for _, y in pairs) > sum(len(x) for x, _ in pairs)
            if pairs and inside >= 0.95 * len(pairs) and (longer or texts.index(a) > texts.index(b)):
                drop.append(a)
                i = next(i for i, f in enumerate(plan.findings) if f.column == ca)
                plan.findings[i] = ColumnFinding(
                    ca,
                    "not used",
                    f"free text contained in column {cb} in {inside / len(pairs):.0%} of rows: "
                    "a near-copy adds nothing to align",
                )
                break
    return drop


# --- objective, fusion, trainer -----------------------------------------------------------------


# --- small helpers ------------------------------------------------------------------------------


__all__ = ["ColumnFinding", "InitResult", "default_config_path", "infer_config", "write_config"]
