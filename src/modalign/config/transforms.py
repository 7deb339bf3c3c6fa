"""Per-kind transform settings (``modalities.NAME.transform``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from modalign.config._base import _Frozen


class ImageTransformConfig(_Frozen):
    """Image loading: Pillow decode, grey or RGB, resize shorter side + centre crop, normalise."""

    size: int = Field(224, gt=0, description="output height and width in pixels")
    channels: Literal[1, 3] = Field(3, description="1 = greyscale, 3 = RGB")
    mean: tuple[float, ...] = Field((0.5,), description="per-channel mean (one value = all)")
    std: tuple[float, ...] = Field((0.5,), description="per-channel std (one value = all)")
    max_pixels: int = Field(64_000_000, gt=0, description="decompression-bomb guard (w*h)")
    interpolation: Literal["bilinear", "bicubic", "nearest"] = Field("bicubic", description="resize filter")
    random_shift: int = Field(0, ge=0, description="training augmentation: max translation in pixels")
    crop_pct: float = Field(
        1.0, gt=0, le=1, description="centre crop keeps this fraction of the resized shorter side (timm's)"
    )

    @model_validator(mode="after")
    def _normalisation_per_channel(self) -> ImageTransformConfig:
        for name, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise ValueError(f"{name} has {len(values)} values; give 1 or channels={self.channels}")
        if any(v <= 0 for v in self.std):
            raise ValueError(f"std must be > 0, got {list(self.std)}")
        return self


class AudioTransformConfig(_Frozen):
    """Audio loading: soundfile decode, mono mix-down, polyphase resampling, pad/crop, log-mel."""

    sample_rate: int = Field(16000, gt=0, description="the model's sample rate in Hz")
    max_seconds: float = Field(5.0, gt=0, description="longer clips are cropped, shorter padded")
    n_fft: int = Field(400, gt=0, description="STFT window length in samples")
    hop_length: int = Field(160, gt=0, description="STFT hop in samples (one mel frame per hop)")
    n_mels: int = Field(64, gt=0, description="mel bands of the log-mel spectrogram")
    f_min: float = Field(0.0, ge=0, description="lowest mel filter frequency in Hz")
    f_max: float | None = Field(None, gt=0, description="highest mel frequency in Hz; null = sample_rate / 2")

    @model_validator(mode="after")
    def _mel_filters_are_not_empty(self) -> AudioTransformConfig:
        # at least one FFT window per clip, f_max <= Nyquist, no mel band narrower than the bins
        from modalign.data._audio_settings import audio_settings_problem  # arithmetic, no torch

        problem = audio_settings_problem(
            self.sample_rate,
            self.max_seconds,
            self.n_fft,
            self.hop_length,
            self.n_mels,
            self.f_min,
            self.f_max,
        )
        if problem is not None:
            raise ValueError(problem)
        return self


class TextTransformConfig(_Frozen):
    """Text: a BPE tokenizer trained on the training split with Hugging Face `tokenizers`."""

    vocab_size: int = Field(8000, gt=10, description="upper bound of the learned vocabulary")
    max_length: int = Field(64, gt=1, description="tokens kept per text (longer is truncated)")
    lowercase: bool = Field(True, description="lowercase text before tokenising")
    min_frequency: int = Field(1, ge=1, description="minimum count of a merge in the BPE training")


class TabularTransformConfig(_Frozen):
    """Tabular: numeric columns standardised with training statistics, categorical ones indexed."""

    numeric: tuple[str, ...] = Field((), description="numeric manifest columns")
    categorical: tuple[str, ...] = Field((), description="categorical manifest columns")
    scaling: Literal["standard", "minmax", "none"] = Field(
        "standard",
        description="numeric scaling fitted on the training split: z-score, (x - min) / (max - min), or raw",
    )
    missing_flags: bool = Field(
        True, description="append one 0/1 missing indicator per numeric feature to the encoder input"
    )


class TimeSeriesTransformConfig(_Frozen):
    """Time series: a list of numbers (or of per-step lists), or a .npy/.csv file -> (T, C)."""

    channels: int = Field(1, ge=1, description="channels C per time step")
    max_length: int | None = Field(None, ge=1, description="keep at most this many leading steps")


_TRANSFORMS: dict[str, type[_Frozen]] = {
    "timeseries": TimeSeriesTransformConfig,
    "image": ImageTransformConfig,
    "audio": AudioTransformConfig,
    "text": TextTransformConfig,
    "tabular": TabularTransformConfig,
}
