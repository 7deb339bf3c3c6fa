"""Arithmetic checks of audio transform settings, shared by the config schema and the transform.

No torch here: validating a config must not import it.
"""

from __future__ import annotations

import math


def nyquist_or(sample_rate: int, f_max: float | None) -> float:
    """``f_max``, or the Nyquist frequency ``sample_rate / 2`` when it is None."""
    return sample_rate / 2 if f_max is None else f_max


def audio_settings_problem(
    sample_rate: int,
    max_seconds: float,
    n_fft: int,
    hop_length: int,
    n_mels: int,
    f_min: float,
    f_max: float | None,
) -> str | None:
    """What is wrong with these settings (None when nothing), naming the field and the fix.

    Pure arithmetic, shared with the config schema (which must not import torch). A mel filter is
    empty when no FFT bin lies strictly between its lower and upper edge: its band would always
    read log(1e-6), whatever the sound.
    """
    if min(sample_rate, n_fft, hop_length, n_mels) <= 0 or max_seconds <= 0 or f_min < 0:
        return "sample_rate, max_seconds, n_fft, hop_length and n_mels must be > 0, f_min >= 0"
    if max_seconds * sample_rate >= 2**31 or n_fft > 2**16:
        return f"max_seconds * sample_rate must stay below 2**31 samples and n_fft at most {2**16}"
    nyquist = sample_rate / 2
    top = nyquist_or(sample_rate, f_max)
    if top > nyquist:
        return f"f_max={f_max} is above the Nyquist frequency sample_rate / 2 = {nyquist:g} Hz"
    if f_min >= top:
        return f"f_min={f_min} must be below f_max ({top:g} Hz)"
    samples = int(round(max_seconds * sample_rate))
    if samples < n_fft:
        return (
            f"max_seconds={max_seconds} gives {samples} samples at sample_rate={sample_rate}, fewer "
            f"than one FFT window (n_fft={n_fft}); raise max_seconds to at least {n_fft / sample_rate:g}"
        )
    bins = n_fft // 2 + 1
    if n_mels > bins:
        return (
            f"n_mels={n_mels} is more than the {bins} FFT bins of n_fft={n_fft}; lower n_mels or raise n_fft"
        )
    step = sample_rate / n_fft  # Hz between FFT bins
    lo, hi = 2595.0 * math.log10(1.0 + f_min / 700.0), 2595.0 * math.log10(1.0 + top / 700.0)
    edges = [
        700.0 * (10.0 ** ((lo + (hi - lo) * k / (n_mels + 1)) / 2595.0) - 1.0) for k in range(n_mels + 2)
    ]
    empty = 0
    for lower, upper in zip(edges[:-2], edges[2:]):
        first_bin = math.floor(lower / step) + 1  # the first bin strictly above the lower edge
        empty += first_bin >= bins or first_bin * step >= upper
    if empty:
        return (
            f"n_mels={n_mels} with n_fft={n_fft} gives {empty} empty mel filter(s) between "
            f"f_min={f_min:g} and {top:g} Hz (bands narrower than the {step:g} Hz bin spacing); "
            "lower n_mels, raise n_fft or raise f_min"
        )
    return None
