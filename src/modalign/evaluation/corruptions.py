"""Corrupted inputs for robustness tables: every metric again with one modality's inputs degraded.

Corruptions (seeded, one severity each, applied to the evaluation split only):

- ``image_noise``: Gaussian noise of std 0.5 on the normalised image tensor (half the data std);
- ``image_blur``: 5x5 Gaussian blur (sigma 1 pixel, edges replicated) of the normalised tensor;
- ``audio_noise``: white noise at 10 dB signal-to-noise ratio on the waveform;
- ``audio_clip``: the waveform clipped at 20% of its peak amplitude;
- ``audio_truncate``: only the first half of the waveform kept (the rest silent).

Image corruptions act on the preprocessed tensors; audio ones re-read each waveform from the
manifest, degrade it, then featurise it exactly as the model's transform does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

CORRUPTIONS = {
    "image": ("image_noise", "image_blur"),
    "audio": ("audio_noise", "audio_clip", "audio_truncate"),
}


def _blur_kernel(sigma: float = 1.0, size: int = 5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]  # (size, size)


def corrupt_image(x: torch.Tensor, name: str, rng: torch.Generator) -> torch.Tensor:
    """One (C, H, W) normalised image degraded by ``name``."""
    if name == "image_noise":
        return x + 0.5 * torch.randn(x.shape, generator=rng)
    if name == "image_blur":
        k = _blur_kernel()
        c = x.shape[0]
        padded = torch.nn.functional.pad(x[None], (2, 2, 2, 2), mode="replicate")
        return torch.nn.functional.conv2d(padded, k.expand(c, 1, 5, 5), groups=c)[0]
    raise ValueError(f"unknown image corruption {name!r}")


def corrupt_waveform(w: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """One mono waveform degraded by ``name``."""
    if name == "audio_noise":  # 10 dB SNR: noise power = signal power / 10
        power = float(np.mean(w.astype(np.float64) ** 2))
        return (w + rng.standard_normal(w.shape) * np.sqrt(power / 10)).astype(np.float32)
    if name == "audio_clip":
        limit = 0.2 * float(np.abs(w).max())
        return np.clip(w, -limit, limit).astype(np.float32)
    if name == "audio_truncate":
        out = w.copy()
        out[len(w) // 2 :] = 0
        return out
    raise ValueError(f"unknown audio corruption {name!r}")


def corrupted_copy(
    samples: Any,
    modality: str,
    name: str,
    transform: Any,
    payload: Callable[[int], Any],
    base_dir: Any,
    seed: int = 0,
) -> Any:
    """A copy of ``samples`` whose ``modality`` inputs are degraded by ``name``.

    Args:
        samples: a :class:`~modalign.data.dataset.SampleSet`.
        transform: the modality's fitted transform (audio: its ``waveform`` and ``log_mel``).
        payload: manifest payload of sample i (audio corruptions re-read the file).
    """
    out = copy.copy(samples)
    out.data = dict(samples.data)
    items = samples.data[modality]
    if name.startswith("image_"):
        g = torch.Generator().manual_seed(seed)
        out.data[modality] = [None if x is None else corrupt_image(x, name, g) for x in items]
        return out
    rng = np.random.default_rng(seed)
    new: list[torch.Tensor | None] = []
    for i, x in enumerate(items):
        if x is None:
            new.append(None)
            continue
        w = corrupt_waveform(transform.waveform(payload(i), base_dir), name, rng)
        t = torch.from_numpy(np.ascontiguousarray(w))[: transform.max_samples]
        new.append(transform.log_mel(torch.nn.functional.pad(t, (0, transform.max_samples - t.shape[0]))))
    out.data[modality] = new
    return out
