"""``modalign init``'s probes of a column's files (images, audio, arrays) and texts: a few files are
decoded and the modality's transform is chosen from what they hold."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Any

from modalign.data.manifest import Manifest
from modalign.data.transforms._files import InlineFile
from modalign.workflows.init_plan import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    Plan,
    is_num,
    media,
    media_path,
    spread,
    value_type,
)

MAX_IMAGE_SIZE = 32  # from-scratch CNNs stay fast on a CPU; the comment tells how to raise it


def probe_image(
    plan: Plan, m: Manifest, c: str, name: str, values: list[Any], k: int, suffix: str
) -> dict[str, Any] | None:
    import numpy as np
    from PIL import Image

    sizes, modes, errors, pixels = [], [], [], []
    picked = spread(values, k)
    for v in picked:
        try:
            with Image.open(media(m, v)) as img:
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


def probe_audio(
    plan: Plan, m: Manifest, c: str, name: str, values: list[Any], k: int, suffix: str
) -> dict[str, Any] | None:
    import soundfile as sf

    durations, rates, errors = [], [], []
    picked = spread(values, 4 * k)  # soundfile.info reads only the header
    for i, v in enumerate(picked):
        try:
            info = sf.info(media(m, v))
            if i % 4 == 0:  # decode a few in full
                sf.read(media(m, v), frames=int(info.samplerate * 30))
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


def probe_series_files(
    plan: Plan, m: Manifest, c: str, name: str, values: list[Any], k: int, suffix: str
) -> dict[str, Any] | None:
    import numpy as np

    shapes, picked = [], spread(values, k)
    for v in picked:
        try:
            shapes.append(np.load(media_path(m, v), mmap_mode="r", allow_pickle=False).shape)
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


def text_modality(plan: Plan, c: str, name: str, values: list[str]) -> dict[str, Any]:
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


def probe_list_column(
    plan: Plan, c: str, name: str, values: list[Any], present: str
) -> dict[str, Any] | None:
    if all(v and all(is_num(x) for x in v) for v in values):
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
    if all(v and all(isinstance(x, list) and x and all(is_num(y) for y in x) for x in v) for v in values):
        widths = {len(x) for v in values for x in v}
        if len(widths) == 1:
            (ch,) = widths
            steps = [len(v) for v in values]
            plan.found(c, f"modality {name}", f"lists of {ch}-number steps: a time series with {ch} channels")
            plan.note(
                ("modalities", name), f"column {c}: {min(steps)} to {max(steps)} steps of {ch} channels"
            )
            return {"kind": "timeseries", "transform": {"channels": ch}}
    inner = sorted({value_type(x) for v in values for x in v}) or ["nothing"]
    plan.found(
        c,
        "not used",
        f"lists of {'/'.join(inner)}: join them into one text column, or make them numbers",
    )
    return None


def inline_suffix(values: list[InlineFile]) -> str | None:
    """The format of in-dataset files as a suffix (``.png``, ``.flac``): the name's, else the
    content's (Pillow or libsndfile recognise it in the first sampled cells)."""
    named = Counter(v.suffix for v in values[:100])
    suffix = named.most_common(1)[0][0]
    if suffix in IMAGE_SUFFIXES + AUDIO_SUFFIXES:
        return suffix
    import soundfile as sf
    from PIL import Image

    for v in spread(values, 5):
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
