"""Decode uploaded images and audio with their size guards, before any pixel or sample is decoded.

Everything a client sends is untrusted: the image's header gives its size, which is checked against
the pixel cap before decoding (decompression bombs); the audio header gives frames and rate, checked
against the length cap before reading. Failures are :class:`MediaError` (answered as 422).
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import numpy as np

from modalign.errors import DataError

# formats a browser uploads; others (EPS, PSD, ...) are refused rather than decoded
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


class MediaError(DataError):
    """An uploaded file cannot be decoded, or is larger than the service allows."""


def decode_image(data: bytes, max_pixels: int) -> Any:
    """A PIL image from uploaded bytes, refused when over ``max_pixels`` or undecodable."""
    from PIL import Image

    if not data:
        raise MediaError("the uploaded image is empty", reason="bad_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
            w, h = img.size  # from the header; nothing decoded yet
            if w * h > max_pixels:
                raise MediaError(
                    f"the uploaded image is {w}x{h} pixels, more than the service's limit of {max_pixels}",
                    reason="image_too_large",
                )
            if w == 0 or h == 0:
                raise MediaError("the uploaded image has zero size", reason="bad_image")
            img.load()
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise MediaError(f"the uploaded image is too large: {e}", reason="image_too_large") from None
    except Image.UnidentifiedImageError:  # its message names a BytesIO object: say it plainly
        raise MediaError(
            "cannot decode the uploaded image (not a recognised image format); send a PNG, JPEG, GIF, "
            "BMP or WebP file",
            reason="bad_image",
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:  # PIL's UnidentifiedImageError is an OSError
        raise MediaError(
            f"cannot decode the uploaded image ({e}); send a PNG, JPEG, GIF, BMP or WebP file",
            reason="bad_image",
        ) from None
    return img


def decode_audio(data: bytes, max_seconds: float) -> tuple[np.ndarray, int]:
    """(samples (T, C) float32, rate) from uploaded bytes, refused when over ``max_seconds``."""
    import soundfile as sf

    if not data:
        raise MediaError("the uploaded audio is empty", reason="bad_audio")
    try:
        info = sf.info(io.BytesIO(data))
        if not info.samplerate > 0:
            raise MediaError(f"the uploaded audio has sample rate {info.samplerate}", reason="bad_audio")
        seconds = info.frames / info.samplerate
        if not math.isfinite(seconds) or seconds > max_seconds:
            raise MediaError(
                f"the uploaded audio lasts {seconds:.1f} s, more than the service's limit of "
                f"{max_seconds:g} s",
                reason="audio_too_long",
            )
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except MediaError:
        raise
    except (RuntimeError, sf.LibsndfileError, OSError, ValueError, TypeError) as e:
        raise MediaError(
            f"cannot decode the uploaded audio ({e}); send a WAV, FLAC or OGG file", reason="bad_audio"
        ) from None
    if samples.shape[0] == 0:
        raise MediaError("the uploaded audio has no samples", reason="bad_audio")
    if not np.isfinite(samples).all():
        raise MediaError("the uploaded audio contains NaN or inf samples", reason="bad_audio")
    return samples, int(rate)
