"""``modalign init``: a commented experiment config inferred from a manifest.

Every column is profiled over all rows, and a few of the files a column names are decoded. Each
column becomes one modality (image or audio files, free text, a list of numbers), the sample id,
the split, the label, one feature of a single tabular modality that groups the scalar numbers and
categories, or is left out, always with the reason. The objective and the trainer follow from the
modalities and the number of training rows: contrastive alignment (``clip``) for two or more
modalities, a fusion task when the data is tabular only (or a single modality) and has a label.

The result is validated by the config schema before it is written; the config is YAML with a
comment above every inferred choice. The module is one file (over 400 lines) because inference,
the choices it drives and the commented rendering are one recipe read top to bottom.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from modalign.config import load_config
from modalign.data.loading import open_manifest
from modalign.data.manifest import Manifest, cell, is_missing
from modalign.data.transforms._files import InlineFile
from modalign.errors import ConfigError
from modalign.io import atomic_write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SERIES_SUFFIXES = (".npy",)
LABEL_NAMES = ("label", "labels", "class", "target", "y", "category", "diagnosis", "outcome")
TEXT_NAMES = ("text", "caption", "captions", "description", "sentence", "title", "transcript", "prompt")
SPLIT_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}
SPLIT_COLUMNS = ("split", "fold", "subset", "partition", "set")
MAX_IMAGE_SIZE = 32  # from-scratch CNNs stay fast on a CPU; the comment tells how to raise it
SMALL_FROM_ROWS = 5000  # training rows from which encoders use the "small" preset


@dataclass(frozen=True)
class ColumnFinding:
    """What ``init`` made of one manifest column.

    Attributes:
        column: the column (``a.b`` for a field of a nested object).
        use: ``id``, ``split``, ``label``, ``modality NAME``, ``feature of NAME`` or ``not used``.
        reason: what was seen in the data that led there.
    """

    column: str
    use: str
    reason: str


@dataclass(frozen=True)
class InitResult:
    """A config inferred from a manifest: the raw dict, the commented YAML and the reasons."""

    raw: dict[str, Any]
    text: str
    findings: list[ColumnFinding]
    notes: list[str]
    n_rows: int


@dataclass
class _Plan:
    """The config being built, with the comment of every path (``("trainer", "lr")``)."""

    raw: dict[str, Any]
    comments: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    findings: list[ColumnFinding] = field(default_factory=list)

    def note(self, path: tuple[str, ...], text: str) -> None:
        self.comments.setdefault(path, []).append(text)

    def found(self, column: str, use: str, reason: str) -> None:
        self.findings.append(ColumnFinding(column, use, reason))


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
    plan = _Plan({"data": {"manifest": str(manifest)}})
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
    _task(plan, m, modalities, label_info, len(train_rows), manifest)
    cfg = copy.deepcopy(plan.raw)
    load_config(raw=cfg)  # the schema's checks: a bug here must not reach the user's file
    notes = [f"{p[0]}: {c}" for p, cs in plan.comments.items() if len(p) == 1 for c in cs]
    header = _header(manifest, m, plan, "CONFIG.yaml" if out is None else str(out))
    text = header + "\n".join(_render(plan.raw, plan.comments)) + "\n"
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
    return Path(_identifier(name) + ".yaml")


# --- roles: id, split, label ----------------------------------------------------------------------


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in rows:
        seen.update(dict.fromkeys(r))
    return list(seen)


def _values(rows: Sequence[dict[str, Any]], column: str) -> list[Any]:
    """The present values of ``column``."""
    return [v for r in rows if not is_missing(v := cell(r, column))]


def _roles(plan: _Plan, m: Manifest, todo: list[str]) -> list[str]:
    """Pick the id and split columns; returns the columns still to place."""
    data = plan.raw["data"]
    if "id" in todo:
        plan.found("id", "id", "named id")
    else:
        plan.found("(none)", "id", "no id column: samples are named by their row number")
    split = next((c for c in SPLIT_COLUMNS if c in todo and _split_values(_values(m.rows, c))), None)
    if split is None:
        raise ConfigError(
            f"{m.path} has no split column: add a column 'split' with the values train, val and test "
            "(e.g. 80/10/10 of the rows at random); training fits on 'train' and reports on 'test'"
        )
    counts = Counter(str(v) for v in _values(m.rows, split))
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


@dataclass(frozen=True)
class _Label:
    column: str
    kind: str  # multiclass or regression
    n_classes: int


def _label(plan: _Plan, m: Manifest, todo: list[str], label: str | None) -> tuple[list[str], _Label | None]:
    candidates = [label] if label is not None else [c for c in todo if c.lower() in LABEL_NAMES]
    for c in candidates:
        values = _values(m.rows, c)
        if not values or any(isinstance(v, (list, dict)) for v in values):
            if label is not None:
                raise ConfigError(f"--label {c}: the column is empty or holds lists/objects, not labels")
            continue
        distinct = len({str(v) for v in values})
        numbers = [_number(v) for v in values]
        many = distinct > max(50, len(values) // 10)
        if all(x is not None for x in numbers) and many:
            kind, why = "regression", f"{distinct} distinct numbers: a regression target"
        elif many and label is None:
            continue  # a free-text "category" or "title" is not a label
        else:
            kind, why = "multiclass", f"{distinct} classes"
        plan.found(c, "label", f"{'--label' if label is not None else 'named like a label'}; {why}")
        return [x for x in todo if x != c], _Label(c, kind, distinct)
    return todo, None


# --- modalities -----------------------------------------------------------------------------------


@dataclass
class _Tabular:
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


def _modalities(plan: _Plan, m: Manifest, todo: list[str], k: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    tab = _Tabular()
    texts: list[str] = []
    for column in todo:
        values = _values(m.rows, column)
        for c, vs in _flatten(column, values):
            name = _unique(_identifier(c), out)
            spec = _one_column(plan, m, c, name, vs, tab, k)
            if spec is None:
                continue
            out[name] = spec if name == c else {**spec, "column": c}
            if spec["kind"] == "text":
                texts.append(name)
    for name in _redundant_texts(plan, m, out, texts):
        del out[name]
    if tab.numeric or tab.categorical:
        name = _unique("tabular", out)
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
    plan: _Plan,
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
        plan.found(c, "not used", f"the same value in every row ({_short(values[0])})")
        return None
    types = {_type(v) for v in values}
    if len(types) > 1:
        plan.found(c, "not used", f"mixed types ({', '.join(sorted(types))}): make it one type")
        return None
    (t,) = types
    present = f"present in {len(values)} of {n} rows" if len(values) < n else ""
    if t == "list":
        return _list_column(plan, c, name, values, present)
    if t in ("number", "bool"):
        _scalar(plan, c, values, tab, t)
        return None
    if t == "InlineFile":  # a Hugging Face Image/Audio column: the bytes tell the format
        suffix = _inline_suffix(values)
    elif t != "str":
        plan.found(c, "not used", f"values of type {t}")
        return None
    else:
        suffix = _file_suffix(values)
    if suffix in IMAGE_SUFFIXES:
        return _image(plan, m, c, name, values, k, suffix)
    if suffix in AUDIO_SUFFIXES:
        return _audio(plan, m, c, name, values, k, suffix)
    if suffix in SERIES_SUFFIXES:
        return _series_files(plan, m, c, name, values, k, suffix)
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
    if all(_number(v) is not None for v in values):  # CSV cells are strings
        _scalar(plan, c, values, tab, "number")
        return None
    spaced = sum(any(ch.isspace() for ch in v.strip()) for v in values) / len(values)
    distinct = len(set(values))
    if c.lower() in TEXT_NAMES or (spaced >= 0.2 and distinct >= 0.1 * len(values)):
        why = f"named {c}" if c.lower() in TEXT_NAMES else f"{spaced:.0%} of the values have spaces"
        plan.found(c, f"modality {name}", f"free text ({why}; {distinct} distinct) {present}".strip())
        return _text(plan, c, name, values)
    if distinct > len(values) // 2:
        plan.found(c, "not used", f"{distinct} distinct single words in {len(values)} rows: an identifier")
        return None
    tab.categorical.append(c)
    plan.found(c, "feature", f"a category ({distinct} distinct values)")
    return None


def _scalar(plan: _Plan, c: str, values: list[Any], tab: _Tabular, t: str) -> None:
    distinct = len({str(v) for v in values})
    if t == "bool":
        tab.categorical.append(c)
        plan.found(c, "feature", "true/false: a category")
    else:
        tab.numeric.append(c)
        plan.found(c, "feature", f"a number ({distinct} distinct values)")


def _list_column(plan: _Plan, c: str, name: str, values: list[Any], present: str) -> dict[str, Any] | None:
    if all(v and all(_is_num(x) for x in v) for v in values):
        lengths = Counter(len(v) for v in values)
        if len(lengths) == 1:
            (width,) = lengths
            holes = any(x is None or (isinstance(x, float) and math.isnan(x)) for v in values for x in v)
            plan.found(
                c,
                f"modality {name}",
                f"{width} numbers in every row: a feature vector (tabular) {present}".strip(),
            )
            transform = {"scaling": "standard", "missing_flags": holes}
            plan.note(
                ("modalities", name),
                f"column {c}: {width} numbers per row, standardised with training statistics"
                + ("; some are missing (null): one 0/1 flag each" if holes else "")
                + " (an ordered signal of fixed length? kind: timeseries reads it as one)",
            )
            return {"kind": "tabular", "transform": transform}
        lo, hi = min(lengths), max(lengths)
        if any(x is None for v in values for x in v):
            plan.found(c, "not used", f"lists of {lo} to {hi} numbers with null steps: fill the gaps")
            return None
        plan.found(c, f"modality {name}", f"lists of {lo} to {hi} numbers: a time series {present}".strip())
        plan.note(("modalities", name), f"column {c}: sequences of {lo} to {hi} steps, one channel")
        return {"kind": "timeseries", "transform": {"channels": 1}}
    if all(v and all(isinstance(x, list) and x and all(_is_num(y) for y in x) for x in v) for v in values):
        widths = {len(x) for v in values for x in v}
        if len(widths) == 1:
            (ch,) = widths
            steps = [len(v) for v in values]
            plan.found(c, f"modality {name}", f"lists of {ch}-number steps: a time series with {ch} channels")
            plan.note(
                ("modalities", name), f"column {c}: {min(steps)} to {max(steps)} steps of {ch} channels"
            )
            return {"kind": "timeseries", "transform": {"channels": ch}}
    inner = sorted({_type(x) for v in values for x in v}) or ["nothing"]
    plan.found(
        c,
        "not used",
        f"lists of {'/'.join(inner)}: join them into one text column, or make them numbers",
    )
    return None


def _image(
    plan: _Plan, m: Manifest, c: str, name: str, values: list[Any], k: int, suffix: str
) -> dict[str, Any] | None:
    import numpy as np
    from PIL import Image

    sizes, modes, errors, pixels = [], [], [], []
    picked = _spread(values, k)
    for v in picked:
        try:
            with Image.open(_media(m, v)) as img:
                img.load()
                sizes.append(img.size)
                modes.append(img.mode)
                pixels.append(img.copy())
        except Exception as e:  # noqa: BLE001  (Pillow raises many types; the reason is reported)
            errors.append(f"{v}: {type(e).__name__}")
    if not sizes:
        plan.found(c, "not used", f"{suffix} paths, but none of {len(picked)} sampled decodes ({errors[0]})")
        return None
    grey = all(md in ("1", "L", "LA", "I", "I;16", "F") for md in modes)
    channels = 1 if grey else 3
    short = int(statistics.median(min(s) for s in sizes))
    size = max(8, min(short, MAX_IMAGE_SIZE))
    arrays = [
        np.asarray(p.convert("L" if grey else "RGB").resize((size, size)), dtype=np.float64) / 255.0
        for p in pixels
    ]
    stack = np.stack(arrays).reshape(len(arrays), -1, channels)
    mean = [round(float(x), 3) for x in stack.mean(axis=(0, 1))]
    std = [round(max(float(x), 0.05), 3) for x in stack.std(axis=(0, 1))]
    w, h = Counter(sizes).most_common(1)[0][0]
    failed = (
        f"; {len(errors)} of {len(picked)} sampled do not decode (data check lists them)" if errors else ""
    )
    plan.found(
        c,
        f"modality {name}",
        f"image files ({suffix}): {len(sizes)} of {len(picked)} sampled decode, "
        f"{w}x{h} {'grey' if grey else 'colour'}{failed}",
    )
    plan.note(
        ("modalities", name),
        f"column {c}: {'grey' if grey else 'colour'} images, mostly {w}x{h}; mean/std measured on "
        f"{len(sizes)} of them; size {size} keeps a from-scratch CNN fast on a CPU (raise it on a GPU)",
    )
    transform = {
        "size": size,
        "channels": channels,
        "mean": mean,
        "std": std,
        "random_shift": max(1, size // 16),
    }
    return {"kind": "image", "encoder": "image_cnn", "transform": transform}


def _audio(
    plan: _Plan, m: Manifest, c: str, name: str, values: list[Any], k: int, suffix: str
) -> dict[str, Any] | None:
    import soundfile as sf

    durations, rates, errors = [], [], []
    picked = _spread(values, 4 * k)  # soundfile.info reads only the header
    for i, v in enumerate(picked):
        try:
            info = sf.info(_media(m, v))
            if i % 4 == 0:  # decode a few in full
                sf.read(_media(m, v), frames=int(info.samplerate * 30))
            durations.append(info.duration)
            rates.append(int(info.samplerate))
        except Exception as e:  # noqa: BLE001  (soundfile raises several types; reported)
            errors.append(f"{v}: {type(e).__name__}")
    if not durations:
        plan.found(c, "not used", f"{suffix} paths, but none of {len(picked)} sampled decodes ({errors[0]})")
        return None
    median = statistics.median(durations)
    p95 = sorted(durations)[min(len(durations) - 1, int(0.95 * len(durations)))]
    native = Counter(rates).most_common(1)[0][0]
    rate = min(native, 16000)
    seconds = min(30.0, max(0.1, math.ceil(p95 * 10) / 10))
    n_fft = 1 << math.ceil(math.log2(0.025 * rate))  # a 25 ms window, rounded up to a power of 2
    failed = (
        f"; {len(errors)} of {len(picked)} sampled do not decode (data check lists them)" if errors else ""
    )
    plan.found(
        c,
        f"modality {name}",
        f"audio files ({suffix}): {native} Hz, median {median:.2f} s over {len(durations)} clips{failed}",
    )
    plan.note(
        ("modalities", name),
        f"column {c}: clips of median {median:.2f} s (95% <= {p95:.2f} s) at {native} Hz; "
        f"max_seconds {seconds:g} keeps 95% whole; 25 ms windows every 10 ms",
    )
    transform = {
        "sample_rate": rate,
        "max_seconds": seconds,
        "n_fft": n_fft,
        "hop_length": rate // 100,
        "n_mels": 40 if rate < 16000 else 64,
    }
    return {"kind": "audio", "encoder": "audio_cnn", "transform": transform}


def _series_files(
    plan: _Plan, m: Manifest, c: str, name: str, values: list[Any], k: int, suffix: str
) -> dict[str, Any] | None:
    import numpy as np

    shapes, picked = [], _spread(values, k)
    for v in picked:
        try:
            shapes.append(np.load(_path(m, v), mmap_mode="r", allow_pickle=False).shape)
        except Exception:  # noqa: BLE001  (numpy raises several types; counted below)
            continue
    channels = {s[1] if len(s) == 2 else 1 for s in shapes if len(s) in (1, 2)}
    if len(channels) != 1:
        why = "none decodes" if not shapes else f"shapes {sorted(set(shapes))[:3]} are not (T,) or (T, C)"
        plan.found(c, "not used", f"{suffix} paths, but of {len(picked)} sampled {why}")
        return None
    (ch,) = channels
    steps = [s[0] for s in shapes]
    plan.found(
        c, f"modality {name}", f"{suffix} files: time series of {ch} channel(s), {len(shapes)} decoded"
    )
    plan.note(("modalities", name), f"column {c}: {suffix} arrays of {min(steps)} to {max(steps)} steps")
    return {"kind": "timeseries", "transform": {"channels": ch}}


def _text(plan: _Plan, c: str, name: str, values: list[str]) -> dict[str, Any]:
    words = [len(v.split()) for v in values]
    vocab = {w.lower() for v in values for w in v.split()}
    p95 = sorted(words)[min(len(words) - 1, int(0.95 * len(words)))]
    max_length = min(128, max(8, math.ceil(1.5 * p95) + 2))
    vocab_size = min(8000, max(200, 100 * math.ceil((1.2 * len(vocab) + 100) / 100)))
    plan.note(
        ("modalities", name),
        f"column {c}: {len(vocab)} distinct words, 95% of texts <= {p95} word(s); a BPE tokenizer "
        f"of <= {vocab_size} tokens, {max_length} tokens kept",
    )
    return {
        "kind": "text",
        "encoder": "text_transformer",
        "transform": {"vocab_size": vocab_size, "max_length": max_length},
    }


def _redundant_texts(plan: _Plan, m: Manifest, mods: dict[str, Any], texts: list[str]) -> list[str]:
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


def _task(
    plan: _Plan,
    m: Manifest,
    mods: dict[str, dict[str, Any]],
    label: _Label | None,
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
    batch = _pow2(n_train / 8, 8, 128 if predict else 256)
    if predict and label is not None:
        raw["model"] = {"embed_dim": 32}
        raw["objectives"] = []
        task = {"name": _identifier(label.column), "column": label.column, "kind": label.kind}
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
        raw["eval"] = {"match_on": _match_on(m, mods, label)}
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


def _match_on(m: Manifest, mods: dict[str, dict[str, Any]], label: _Label | None) -> str | None:
    if label is None or label.kind != "multiclass":
        return None
    for name, spec in mods.items():
        if spec["kind"] in ("text", "image", "audio"):
            values = _values(m.rows, spec.get("column", name))
            if len({str(v) for v in values}) < 0.9 * len(values):
                return label.column
    return None


# --- small helpers ------------------------------------------------------------------------------


def _type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    names: dict[type, str] = {str: "str", list: "list", dict: "object"}
    return names.get(type(v), type(v).__name__)


def _is_num(x: Any) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v) if isinstance(v, str) and v.strip() else None
    except ValueError:
        return None


def _file_suffix(values: list[str]) -> str | None:
    """The suffix most values end with, when 90% of them look like file paths."""
    suffixes = Counter(Path(v).suffix.lower() for v in values if "\n" not in v and len(v) < 4096)
    suffix, n = suffixes.most_common(1)[0] if suffixes else ("", 0)
    known = IMAGE_SUFFIXES + AUDIO_SUFFIXES + SERIES_SUFFIXES
    if n < 0.9 * len(values) or not re.fullmatch(r"\.[a-z0-9]{2,5}", suffix):
        return None
    if suffix not in known and any(" " in v for v in values[:100]):
        return None  # "e.g. the 1.5kg" is text, not a file
    return suffix


def _path(m: Manifest, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else m.base_dir / p


def _media(m: Manifest, value: str | InlineFile) -> str | BinaryIO:
    """What a decoder opens for a media cell: the file a path names, or the bytes a cell holds."""
    return value.open() if isinstance(value, InlineFile) else str(_path(m, value))


def _inline_suffix(values: list[InlineFile]) -> str | None:
    """The format of in-dataset files as a suffix (``.png``, ``.flac``): the name's, else the
    content's (Pillow or libsndfile recognise it in the first sampled cells)."""
    named = Counter(v.suffix for v in values[:100])
    suffix = named.most_common(1)[0][0]
    if suffix in IMAGE_SUFFIXES + AUDIO_SUFFIXES:
        return suffix
    import soundfile as sf
    from PIL import Image

    for v in _spread(values, 5):
        try:
            with Image.open(v.open()) as img:
                return f".{str(img.format).lower()}"
        except Exception:  # noqa: BLE001  (not an image: try audio)
            pass
        try:
            return f".{sf.info(v.open()).format.lower()}"
        except Exception:  # noqa: BLE001  (neither: try the next cell)
            pass
    return None


def _spread(values: list[Any], k: int) -> list[Any]:
    """Up to ``k`` values spread evenly over the rows."""
    step = max(1, len(values) // k)
    return values[::step][:k]


def _pow2(x: float, lo: int, hi: int) -> int:
    return max(lo, min(hi, 1 << max(0, int(math.log2(max(x, 1))))))


def _identifier(name: str) -> str:
    s = re.sub(r"\W+", "_", name).strip("_")
    return s or "column"


def _unique(name: str, taken: dict[str, Any]) -> str:
    out, i = name, 2
    while out in taken:
        out, i = f"{name}_{i}", i + 1
    return out


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


# --- rendering ----------------------------------------------------------------------------------


def _header(manifest: str | Path, m: Manifest, plan: _Plan, out: str) -> str:
    lines = _wrap(
        [
            f"Written by `modalign init {manifest}` ({len(m.rows)} rows). Each choice is a guess from "
            "the data; the comment above it says why. Relative paths in a config start at the "
            "working directory, file paths in the manifest at the manifest's folder. Check the data "
            "with the config, then train:"
        ]
    )
    lines += [f"  modalign data check {manifest} --config {out}", f"  modalign train {out}"]
    unused = [f for f in plan.findings if f.use == "not used"]
    if unused:
        lines += ["Columns not used:"] + _wrap([f"{f.column}: {f.reason}" for f in unused], indent="  ")
    return "".join(f"# {line}\n" for line in lines)


def _wrap(paragraphs: list[str], width: int = 98, indent: str = "") -> list[str]:
    """Lines of at most ``width`` characters (``indent`` before each paragraph's first line)."""
    out = []
    for text in paragraphs:
        line, first = text, True
        while len(line) + len(indent) * first > width:
            cut = line.rfind(" ", 0, width - len(indent) * first)
            cut = cut if cut > 0 else width
            out.append(indent * first + line[:cut])
            line, first = line[cut:].lstrip(), False
        out.append(indent * first + line)
    return out


def _render(
    node: dict[str, Any], comments: dict[tuple[str, ...], list[str]], path: tuple[str, ...] = ()
) -> list[str]:
    """Block YAML for sections and modalities, flow YAML inside them, comments above the keys."""
    pad = "  " * len(path)
    lines: list[str] = []
    for key, value in node.items():
        p = (*path, str(key))
        lines += [f"{pad}# {c}" for c in _wrap(comments.get(p, []), 98 - len(pad))]
        block = len(p) == 1 or (len(p) == 2 and p[0] == "modalities")
        if block and isinstance(value, dict) and value:
            lines.append(f"{pad}{_flow(key)}:")
            lines += _render(value, comments, p)
        elif block and isinstance(value, list) and value:
            lines.append(f"{pad}{_flow(key)}:")
            lines += [f"{pad}  - {_flow(item)}" for item in value]
        else:
            lines.append(f"{pad}{_flow(key)}: {_flow(value)}")
    return lines


def _flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False)
    return text.removesuffix("\n...\n").strip()


__all__ = ["ColumnFinding", "InitResult", "default_config_path", "infer_config", "write_config"]
