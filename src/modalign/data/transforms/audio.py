"""Audio transform: decode (WAV/FLAC/OGG via soundfile), mono, resample, pad/crop, log-mel.

Output (n_mels, T) float32 with ``T = 1 + floor(max_samples / hop_length)`` (centred STFT). Accepts a
file path, an :class:`~modalign.data.transforms._files.InlineFile`, a 1-D/2-D float array at the
model's rate, or ``(array, sample_rate)``.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from modalign.data._audio_settings import audio_settings_problem, nyquist_or
from modalign.data.transforms._files import open_file
from modalign.data.transforms.base import Transform
from modalign.errors import ConfigError, DataError


def hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """Triangular HTK mel filters on the rfft bins: (n_mels, n_fft // 2 + 1)."""
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)  # rfft bins
    edges = mel_to_hz(
        torch.linspace(
            hz_to_mel(torch.tensor(f_min, dtype=torch.float64)).item(),
            hz_to_mel(torch.tensor(f_max, dtype=torch.float64)).item(),
            n_mels + 2,
            dtype=torch.float64,
        )
    )
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lower) / (centre - lower)
    down = (upper - freqs[None, :]) / (upper - centre)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def resample(x: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Anti-aliased polyphase resampling (Kaiser-windowed FIR, scipy ``resample_poly``)."""
    if orig_rate == target_rate:
        return x
    from scipy.signal import resample_poly

    ratio = Fraction(target_rate, orig_rate).limit_denominator(1000)
    if ratio.numerator == 0:
        raise DataError(
            f"sample rate {orig_rate} Hz is more than 1000 times the model's {target_rate} Hz",
            reason="bad_sample_rate",
        )
    return resample_poly(x, ratio.numerator, ratio.denominator).astype(np.float32)


class AudioTransform(Transform):
    """Decode and featurise audio as log-mel spectrograms.

    Args:
        sample_rate: the model's rate; other rates are resampled.
        max_seconds: clips are cropped (from the start) or zero-padded to this duration.
        n_fft, hop_length, n_mels, f_min, f_max: STFT and mel settings (f_max defaults to Nyquist).
    """

    kind = "audio"

    def __init__(
        self,
        sample_rate: int = 16000,
        max_seconds: float = 5.0,
        n_fft: int = 400,
        hop_length: int = 160,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
    ):
        self.sample_rate = sample_rate
        self.max_seconds = max_seconds
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.n_mels = n_mels
        self.f_min = f_min
        self.f_max = f_max
        self.max_samples = int(round(max_seconds * sample_rate))
        problem = audio_settings_problem(sample_rate, max_seconds, n_fft, hop_length, n_mels, f_min, f_max)
        if problem is not None:
            raise ConfigError(f"audio transform: {problem}")
        self._fb = mel_filterbank(n_fft, n_mels, sample_rate, f_min, nyquist_or(sample_rate, f_max))
        if not bool((self._fb.sum(dim=1) > 0).all()):  # the arithmetic above missed a rounding case
            raise ConfigError("audio transform: an empty mel filter; lower n_mels or raise n_fft")
        self._window = torch.hann_window(n_fft)

    @property
    def n_frames(self) -> int:
        return 1 + self.max_samples // self.hop_length

    def waveform(self, payload: Any, base_dir: Path) -> np.ndarray:
        """The mono float32 waveform at the model's rate, before padding/cropping."""
        path: str | None = None
        if isinstance(payload, tuple) and len(payload) == 2:
            data, rate = _samples(payload[0]), _rate(payload[1])
        elif isinstance(payload, np.ndarray):
            data, rate = _samples(payload), self.sample_rate
        else:
            source, path = open_file(payload, base_dir)
            data, rate = _read(source, path)
        if data.ndim == 2:
            data = data.mean(axis=1)  # (T, C) -> mono
        if data.ndim != 1:
            raise DataError(f"audio has shape {data.shape}", reason="wrong_shape", path=path)
        if data.size == 0:
            raise DataError("audio has zero length", reason="empty_audio", path=path)
        if not np.isfinite(data).all():
            raise DataError("audio contains NaN or inf", reason="non_finite", path=path)
        return resample(data, rate, self.sample_rate)

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(self.waveform(payload, base_dir)))
        x = x[: self.max_samples]
        x = torch.nn.functional.pad(x, (0, self.max_samples - x.shape[0]))
        return self.log_mel(x)

    def log_mel(self, x: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (n_mels, T) natural-log mel power (floor 1e-6)."""
        spec = torch.stft(
            x, self.n_fft, self.hop_length, window=self._window, center=True, return_complex=True
        )
        power = spec.abs() ** 2  # (F, T)
        return torch.log(self._fb @ power + 1e-6)

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.n_mels, self.n_frames)

    def settings(self) -> dict[str, Any]:
        return {
            "sample_rate": self.sample_rate,
            "max_seconds": self.max_seconds,
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "n_mels": self.n_mels,
            "f_min": self.f_min,
            "f_max": self.f_max,
        }

    def encoder_kwargs(self) -> dict[str, Any]:
        return {"n_mels": self.n_mels}


def _samples(data: Any) -> np.ndarray:
    try:
        return np.asarray(data, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        raise DataError("audio samples must be an array of numbers", reason="wrong_type") from None


def _rate(rate: Any) -> int:
    """A sample rate given with an array: a positive whole number of Hz."""
    try:
        value = float(rate)
    except (TypeError, ValueError, OverflowError):
        value = math.nan
    if not math.isfinite(value) or value <= 0 or value != int(value):
        raise DataError(
            f"bad sample rate {rate!r}: give (samples, rate) with a positive whole number of Hz",
            reason="bad_sample_rate",
        )
    return int(value)


def _read(source: Path | BinaryIO, path: str) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        if _truncated(sf.info(source).extra_info):
            raise DataError(
                "audio file is truncated (the header promises more data than the file holds)",
                reason="bad_audio",
                path=path,
            )
        _rewound(source)
        data, rate = sf.read(source, dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError, OSError) as e:
        raise DataError(f"cannot decode audio ({e})", reason="bad_audio", path=path) from None
    if not math.isfinite(rate) or rate <= 0:
        raise DataError(f"bad sample rate {rate}", reason="bad_audio", path=path)
    return data, int(rate)


def _truncated(extra_info: str) -> bool:
    # libsndfile decodes a truncated WAV/AIFF silently but reports "data : N (should be M)".
    m = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", extra_info, re.MULTILINE)
    return m is not None and int(m.group(2)) < int(m.group(1))


def _rewound(source: Path | BinaryIO) -> None:
    if not isinstance(source, Path):  # sf.info read the header of the in-memory file
        source.seek(0)
