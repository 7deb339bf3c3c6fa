"""Shared fixtures: a small synthetic tri-modal manifest (real files on disk) and a tiny config."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

WORDS = ["circle", "square", "cross", "stripe"]
# headless Chromium of the browser tests (the report page, the search page): no sandbox, nothing fetched
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
RATE = 8000


def _image(label: int, rng: np.random.Generator) -> np.ndarray:
    img = np.zeros((12, 12), dtype=np.uint8)
    if label == 0:
        yy, xx = np.mgrid[:12, :12]
        img[(yy - 6) ** 2 + (xx - 6) ** 2 < 16] = 255
    elif label == 1:
        img[3:9, 3:9] = 255
    elif label == 2:
        img[5:7, :] = 255
        img[:, 5:7] = 255
    else:
        img[::3, :] = 255
    noise = rng.integers(0, 40, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def _tone(label: int, rng: np.random.Generator) -> np.ndarray:
    n = int(RATE * rng.uniform(0.2, 0.4))
    t = np.arange(n) / RATE
    f = 300.0 * (label + 1)
    return (0.5 * np.sin(2 * np.pi * f * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)


def write_dataset(root: Path, n_per_split: dict[str, int] | None = None, seed: int = 0) -> Path:
    """Write images/, audio/ and manifest.jsonl with columns id, image, audio, text, label, split."""
    rng = np.random.default_rng(seed)
    n_per_split = n_per_split or {"train": 48, "val": 8, "test": 16}
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    k = 0
    for split, n in n_per_split.items():
        for _ in range(n):
            label = k % len(WORDS)
            Image.fromarray(_image(label, rng), mode="L").save(root / "images" / f"{k}.png")
            sf.write(root / "audio" / f"{k}.wav", _tone(label, rng), RATE)
            rows.append(
                {
                    "id": f"s{k}",
                    "image": f"images/{k}.png",
                    "audio": f"audio/{k}.wav",
                    "text": f"a {WORDS[label]}",
                    "label": label,
                    "split": split,
                    "extra": {"nested": [1, 2, {"x": None}]},
                }
            )
            k += 1
    write_jsonl(root / "manifest.jsonl", rows)
    return root / "manifest.jsonl"


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tiny_config(manifest: Path, **trainer: Any) -> dict[str, Any]:
    """A raw config dict for the synthetic data that trains in seconds."""
    return {
        "data": {"manifest": str(manifest), "label_column": "label"},
        "modalities": {
            "image": {
                "kind": "image",
                "transform": {"size": 8, "channels": 1},
                "encoder_params": {"widths": [8, 16]},
            },
            "audio": {
                "kind": "audio",
                "transform": {
                    "sample_rate": 8000,
                    "max_seconds": 0.4,
                    "n_fft": 128,
                    "hop_length": 64,
                    "n_mels": 16,
                },
                "encoder_params": {"widths": [16, 16]},
            },
            "text": {
                "kind": "text",
                "transform": {"vocab_size": 40, "max_length": 4},
                "encoder_params": {"width": 16, "depth": 1, "heads": 2, "dropout": 0.1},
            },
        },
        "model": {"embed_dim": 16},
        "trainer": {
            "max_steps": 8,
            "batch_size": 16,
            "lr": 0.003,
            "warmup_steps": 2,
            "checkpoint_every": 3,
            "val_every": 4,
            "seed": 0,
            **trainer,
        },
        "eval": {"match_on": "label"},
    }


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Path of a synthetic manifest shared by the tests that only read it."""
    return write_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(autouse=True, scope="session")
def _cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Arrow copies of Parquet files (modalign.data.arrow_copy) go to a temporary cache."""
    os.environ["MODALIGN_CACHE"] = str(tmp_path_factory.mktemp("cache"))
