"""Fuzz pass: corrupted manifests and random config values never end in a traceback (issue 8).

A seeded generator (the same cases on every run, no extra dependency) mutates a small valid
manifest, as JSONL, CSV and Parquet bytes and as values, and a small valid config. Reading,
validating and ``data check`` may raise only :class:`ModalignError` subclasses. Cases stay tiny
(8 rows; one 4x4 image and one 0.05 s clip, decoded only when a row still names them).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from modalign.config import load_config
from modalign.errors import ModalignError
from modalign.workflows.check import check_manifest

COLUMNS = ["id", "split", "text", "caption", "a", "b", "c", "series", "image", "audio", "label"]
TEXTS = ["red circle", "blue square", "green cross", "a stripe"]
CONFIG: dict[str, Any] = {
    "data": {"manifest": "m.jsonl", "label_column": "label"},
    "modalities": {
        "text": {"kind": "text", "transform": {"vocab_size": 30, "max_length": 4}},
        "caption": {"kind": "text", "transform": {"vocab_size": 30, "max_length": 4}},
        "tab": {"kind": "tabular", "transform": {"numeric": ["a", "b"], "categorical": ["c"]}},
        "series": {"kind": "timeseries", "transform": {"channels": 1}},
        "image": {"kind": "image", "transform": {"size": 4, "channels": 1}},
        "audio": {
            "kind": "audio",
            "transform": {
                "sample_rate": 8000,
                "max_seconds": 0.05,
                "n_fft": 64,
                "hop_length": 32,
                "n_mels": 8,
            },
        },
    },
    "model": {"embed_dim": 8},
    "trainer": {"batch_size": 4},
    "eval": {"match_on": "label"},
}
# Replacement values: types and edge numbers. Sizes stay small on purpose: a config may ask for a
# 10**9-pixel image (valid, and a memory bomb by design), which is not what this pass looks for.
VALUES: list[Any] = [
    None, "", " ", "x", "inf", "-inf", "nan", "1e999", "NaN", "0", "-1", "../../etc/passwd",
    "/nonexistent/file.png", "images/a.png", "audio/a.wav", "images", "\u2028", "\ud800", "x" * 300,
    0, 1, -1, 2, 3, 7, 64, 10**4, 10**30, -(10**30), 0.0, -0.0, 0.5, 1e-300, 1e308, -1e308,
    float("nan"), float("inf"), float("-inf"), True, False, [], {}, [0], [1, 2], [2, 2], [0.9, 0.98],
    [[1, 2], [3]], [[1.0], [2.0]], ["a", 1], {"x": 1}, {"nested": {"deeper": [None]}}, [None],
]  # fmt: skip
JSON_BITS = [
    b"\xff", b"\x00", b"\xef\xbb\xbf", b'"', b",", b"{", b"}", b"[", b"]", b":", b"\n", b"\r\n", b"\r",
    b"NaN", b"Infinity", b"-Infinity", b"1e999", b"null", b"true", b"[" * 50, b'"\\ud800"', b"\\",
    b'"id"', b'"split": "train"', b"\xc3", b"\xe2\x80\xa8",
]  # fmt: skip
INTS = [0, 1, 2, 3, 4, 7, 16, 64, 1000]
FLOATS = [0.0, 1e-9, 1e-3, 0.5, 0.9, 0.999, 1.0, 2.0, 100.0]
CONFIG_FIELDS: dict[tuple[str, ...], list[Any]] = {  # field -> values near (and at) its limits
    ("trainer", "max_steps"): INTS, ("trainer", "batch_size"): [*INTS, "full"], ("trainer", "lr"): FLOATS,
    ("trainer", "betas"): [[0.0, 0.0], [0.9, 0.999], [0.999, 0.9], [1.0, 0.5], [0.5]],
    ("trainer", "eps"): FLOATS, ("trainer", "threads"): [None, *INTS],
    ("trainer", "grad_clip"): [None, *FLOATS],
    ("trainer", "warmup_steps"): INTS, ("trainer", "min_lr_ratio"): FLOATS,
    ("trainer", "weight_decay"): FLOATS, ("trainer", "ema_decay"): [None, *FLOATS],
    ("trainer", "micro_batch_size"): [None, *INTS], ("trainer", "accumulation"): ["none", "cached"],
    ("trainer", "device"): ["cpu", "auto", "cuda:x", "gpu"],
    ("trainer", "precision"): ["fp32", "bf16", "fp16"],
    ("trainer", "seed"): [-1, *INTS], ("eval", "ks"): [[1], [1, 5], [2, 1], [100], [0, 1]],
    ("eval", "batch_size"): INTS, ("eval", "match_on"): [None, "label", "id", "text", "a", "series", "nope"],
    ("eval", "zeroshot_text"): [None, "text", "caption", "tab"],
    ("eval", "robustness", "mcar_rates"): [[], [0.0], [0.5, 1.0], [1.5]],
    ("data", "label_column"): [None, "label", "text", "series", "id", "nope"],
    ("data", "id_column"): ["id", "text", "label", "series", "nope"],
    ("data", "split_column"): ["split", "id", "label", "nope"],
    ("data", "train_split"): ["train", "test", "nope", ""], ("data", "on_error"): ["skip", "fail"],
    ("model", "embed_dim"): INTS, ("model", "head"): ["linear", "mlp", "none"],
    ("modalities", "text", "transform"): [None, {}, {"vocab_size": 11}],
    ("modalities", "text", "transform", "vocab_size"): INTS,
    ("modalities", "text", "transform", "max_length"): INTS,
    ("modalities", "text", "transform", "lowercase"): [True, False],
    ("modalities", "text", "kind"): ["text", "image", "audio", "tabular", "timeseries"],
    ("modalities", "text", "column"): [None, "caption", "label", "series", "a", "image", "nope"],
    ("modalities", "caption", "encoder"): [None, "text_transformer", "text_cnn", "image_cnn"],
    ("modalities", "tab", "transform", "numeric"): [[], ["a"], ["a", "text"], ["label", "b"], ["series"]],
    ("modalities", "tab", "transform", "categorical"): [[], ["c"], ["text", "series"], ["a"]],
    ("modalities", "tab", "transform", "scaling"): ["standard", "minmax", "none"],
    ("modalities", "tab", "transform", "missing_flags"): [True, False],
    ("modalities", "series", "transform", "channels"): INTS,
    ("modalities", "series", "transform", "max_length"): [None, *INTS],
    ("modalities", "image", "transform", "size"): INTS,
    ("modalities", "image", "transform", "channels"): [1, 3],
    ("modalities", "image", "transform", "mean"): [[0.5], [0.1, 0.2, 0.3], [0.0, 0.0]],
    ("modalities", "image", "transform", "std"): [[0.5], [0.1, 0.2, 0.3], [1e-9], [0.0]],
    ("modalities", "image", "transform", "interpolation"): ["bilinear", "bicubic", "nearest"],
    ("modalities", "image", "transform", "random_shift"): INTS,
    ("modalities", "image", "transform", "crop_pct"): [0.0, 0.5, 0.875, 1.0, 1.5],
    ("modalities", "audio", "transform", "sample_rate"): [1, 100, 8000, 16000, 44100],
    ("modalities", "audio", "transform", "max_seconds"): [0.0, 1e-3, 0.01, 0.05, 0.5, 1.0],
    ("modalities", "audio", "transform", "n_fft"): INTS,
    ("modalities", "audio", "transform", "hop_length"): INTS,
    ("modalities", "audio", "transform", "n_mels"): INTS,
    ("modalities", "audio", "transform", "f_min"): [0.0, 10.0, 3999.0, 4000.0],
    ("modalities", "audio", "transform", "f_max"): [None, 100.0, 3999.0, 4000.0, 4001.0],
    ("modalities", "audio", "transform"): [None, {}, {"sample_rate": 8000}],
    ("objectives",): [[], [{"name": "siglip"}], [{"name": "clip", "weight": 0.0}], [{"name": "symile"}]],
}  # fmt: skip
SETS = [
    "k=[1", "trainer.lr={", "=", "noequals", "trainer=1", "trainer.lr.x=1", "..=1", "a.b.c=d",
    "modalities.text.transform=!!python/object/apply:os.system ['true']", "eval.ks=[0, 1",
    "data.manifest=", "trainer.betas=[2,", "modalities.text.kind=[image]", "trainer.max_steps=1e400",
    "modalities=null", "trainer.lr=.nan", "modalities.text={kind: smell}",
]  # fmt: skip


def _rows(rng: random.Random) -> list[dict[str, Any]]:
    rows = []
    for i in range(8):
        rows.append(
            {
                "id": f"s{i}",
                "split": "train" if i < 6 else "test",
                "text": TEXTS[i % 4],
                "caption": f"shape {i % 4}",
                "a": float(i),
                "b": rng.uniform(-1, 1),
                "c": "xy"[i % 2],
                "series": [rng.uniform(-1, 1) for _ in range(3)],
                "image": "images/a.png" if i % 3 == 0 else None,
                "audio": "audio/a.wav" if i == 1 else None,
                "label": i % 4,
            }
        )
    return rows


def _mutate_values(
    rows: list[dict[str, Any]], rng: random.Random, column: str, value: Any
) -> list[dict[str, Any]]:
    """``column`` of a random row set to ``value``, then up to two random mutations."""
    rows = copy.deepcopy(rows)
    rng.choice(rows)[column] = copy.deepcopy(value)
    for _ in range(rng.randint(0, 2)):
        row = rng.choice(rows)
        op = rng.random()
        if op < 0.7:
            row[rng.choice(COLUMNS)] = copy.deepcopy(rng.choice(VALUES))
        elif op < 0.8:
            row.pop(rng.choice(COLUMNS), None)
        elif op < 0.9:
            row["id"] = rng.choice(rows)["id"]  # duplicate ids
        else:
            row[rng.choice(["extra", "", "ID", "id "])] = rng.choice(VALUES)
    return rows


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op, at = rng.random(), rng.randrange(len(b) + 1)
        if op < 0.3 and b:
            b[min(at, len(b) - 1)] = rng.randrange(256)
        elif op < 0.6:
            b[at:at] = rng.choice(JSON_BITS)
        elif op < 0.75:
            del b[at : at + rng.randint(1, 20)]
        elif op < 0.85:
            b = b[:at]
        else:
            lines = bytes(b).split(b"\n")
            rng.shuffle(lines)
            b = bytearray(b"\n".join(lines + lines[: rng.randint(0, 2)]))
    return bytes(b)


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=sorted({k for r in rows for k in r}))
    w.writeheader()
    w.writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


def _parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), sink)
    return sink.getvalue()


def _mutate_config(rng: random.Random) -> dict[str, Any]:
    raw = copy.deepcopy(CONFIG)
    for _ in range(rng.randint(1, 2)):
        path = rng.choice(list(CONFIG_FIELDS))
        node: Any = raw
        for key in path[:-1]:
            if not isinstance(node, dict):
                break
            node = node.setdefault(key, {})
        if isinstance(node, dict):
            node[path[-1]] = copy.deepcopy(rng.choice(CONFIG_FIELDS[path] if rng.random() < 0.7 else VALUES))
    return raw


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "images").mkdir()
    (root / "audio").mkdir()
    Image.fromarray(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16, mode="L").save(
        root / "images" / "a.png"
    )
    sf.write(root / "audio" / "a.wav", np.sin(np.arange(400) / 5.0).astype(np.float32), 8000)
    return root


def _run(failures: list[str], case: str, call: Callable[..., object], *args: Any) -> None:
    try:
        call(*args)
    except ModalignError:
        pass
    except Exception as e:  # a traceback a user would see
        failures.append(f"{type(e).__name__}: {e} <- {case}"[:500])


def _check_config(manifest: Path, raw: dict[str, Any], sets: list[str]) -> None:
    check_manifest(manifest, load_config(raw=raw, overrides=sets))


def test_fuzzed_manifests_and_configs_raise_only_modalign_errors(corpus: Path) -> None:
    pytest.importorskip("pyarrow")
    rng = random.Random(20240608)
    cfg = load_config(raw={**CONFIG, "data": {**CONFIG["data"], "manifest": str(corpus / "m.jsonl")}})
    failures: list[str] = []
    cases = 0
    writers = [("jsonl", _jsonl), ("csv", _csv), ("parquet", _parquet)]
    # every (column, value) pair once, each in one of the formats in turn: 11 x 53 = 583 cases
    pairs = [(c, v) for v in VALUES for c in COLUMNS]
    for n, (column, value) in enumerate(pairs):
        rows = _mutate_values(_rows(rng), rng, column, value)
        suffix, write = writers[n % 3]
        try:
            data = write(rows)
        except Exception:  # pyarrow refuses a column of mixed types: write it as JSONL
            suffix, data = "jsonl", _jsonl(rows)
        path = corpus / f"v{n}.{suffix}"
        path.write_bytes(data)
        _run(failures, f"values {suffix} {rows}", check_manifest, path, cfg)
        cases += 1
    # corrupted bytes: 200 JSONL and CSV files, 150 Parquet files (read only: most do not parse)
    for n in range(200):
        suffix, write = writers[n % 2]
        path = corpus / f"b{n}.{suffix}"
        path.write_bytes(_mutate_bytes(write(_rows(rng)), rng))
        _run(failures, f"bytes {suffix} {path.read_bytes()[:200]!r}", check_manifest, path, cfg)
        cases += 1
    good_parquet = _parquet(_rows(rng))
    for n in range(150):
        path = corpus / f"b{n}.parquet"
        path.write_bytes(_mutate_bytes(good_parquet, rng))
        _run(failures, f"parquet bytes #{n}", check_manifest, path, cfg)
        cases += 1
    # random config values (1-2 fields; every tenth case also a --set string)
    (corpus / "m.jsonl").write_bytes(_jsonl(_rows(rng)))
    for n in range(250):
        raw = _mutate_config(rng)
        raw["data"] = raw["data"] if isinstance(raw["data"], dict) else {}
        raw["data"]["manifest"] = str(corpus / "m.jsonl")
        sets = [rng.choice(SETS)] if n % 10 == 0 else []
        _run(failures, f"config {raw} {sets}", _check_config, corpus / "m.jsonl", raw, sets)
        cases += 1
    assert cases >= 1000
    assert not failures, f"{len(failures)} of {cases} cases ended in a traceback:\n" + "\n".join(
        failures[:15]
    )
