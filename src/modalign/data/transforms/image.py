"""Image transform: Pillow decode, grey/RGB, resize shorter side + centre crop, normalise.

With ``crop_pct`` below 1 the shorter side is resized to ``floor(size / crop_pct)`` before the
``size`` centre crop (timm's evaluation crop).

Output (C, size, size) float32. Accepts a file path (PNG, JPEG, anything Pillow decodes) or an
:class:`~modalign.data.transforms._files.InlineFile` holding such a file, a PIL
image or an (H, W) / (H, W, C) array (C = 1, 3 or 4): uint8 (or any integers) in [0, 255], floats
in [0, 1] (scaled by 255, as a uint8 image would be), or bools. Other ranges are refused.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from modalign.data.transforms._files import open_file
from modalign.data.transforms.base import Transform
from modalign.errors import ConfigError, DataError

_RESAMPLE = {"bilinear": 2, "bicubic": 3, "nearest": 0}  # PIL.Image.Resampling values


class ImageTransform(Transform):
    """Decode and normalise images.

    Args:
        size: output height and width.
        channels: 1 (greyscale) or 3 (RGB).
        mean, std: per-channel normalisation (one value applies to every channel).
        max_pixels: images with more pixels are refused (decompression-bomb guard).
        interpolation: resize filter.
        random_shift: training-time augmentation: translate each image by up to this many pixels
            in each direction (edge pixels repeated), 0 = off.
        crop_pct: fraction of the resized shorter side the centre crop keeps (1 = all of it).
    """

    kind = "image"

    def __init__(
        self,
        size: int = 224,
        channels: int = 3,
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        max_pixels: int = 64_000_000,
        interpolation: str = "bicubic",
        random_shift: int = 0,
        crop_pct: float = 1.0,
    ):
        if not 0 < crop_pct <= 1:
            raise ConfigError(f"image crop_pct must be in (0, 1], got {crop_pct}")
        self.size = size
        self.channels = channels
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.max_pixels = max_pixels
        self.interpolation = interpolation
        self.random_shift = random_shift
        self.crop_pct = float(crop_pct)
        self._mean = torch.tensor(_per_channel(self.mean, channels)).view(-1, 1, 1)
        self._std = torch.tensor(_per_channel(self.std, channels)).view(-1, 1, 1)
        finite = bool(torch.isfinite(self._mean).all() and torch.isfinite(self._std).all())
        if not finite or not bool((self._std > 0).all()):
            raise ConfigError(f"image std must be > 0 and finite, got mean {self.mean}, std {self.std}")

    def load(self, payload: Any, base_dir: Path) -> torch.Tensor:
        from PIL import Image

        if isinstance(payload, np.ndarray):
            img = Image.fromarray(_as_uint8(payload))
        elif isinstance(payload, Image.Image):
            img = payload
        else:
            img = self._open(*open_file(payload, base_dir))
        img = img.convert("L" if self.channels == 1 else "RGB")
        img = self._resize_crop(img)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)
        x = x.unsqueeze(0) if x.ndim == 2 else x.permute(2, 0, 1)  # (C, H, W)
        return (x - self._mean) / self._std

    def _open(self, path: Path | BinaryIO, name: str) -> Any:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(path)
                w, h = img.size
                if w * h > self.max_pixels:
                    raise DataError(
                        f"image is {w}x{h}, more than max_pixels={self.max_pixels}",
                        reason="image_too_large",
                        path=name,
                    )
                img.load()  # decodes now, so truncation is caught here
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise DataError(str(e), reason="image_too_large", path=name) from None
        except (OSError, ValueError, SyntaxError) as e:
            raise DataError(f"cannot decode image ({e})", reason="bad_image", path=name) from None
        if img.size[0] == 0 or img.size[1] == 0:
            raise DataError("image has zero size", reason="bad_image", path=name)
        return img

    def _resize_crop(self, img: Any) -> Any:
        w, h = img.size
        s, short = self.size, math.floor(self.size / self.crop_pct)
        scale = short / min(w, h)
        nw, nh = max(short, round(w * scale)), max(short, round(h * scale))
        if (nw, nh) != (w, h):
            img = img.resize((nw, nh), resample=_RESAMPLE[self.interpolation])
        if (nw, nh) != (s, s):
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
        return img

    def augments(self) -> bool:
        return self.random_shift > 0

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> each image translated by a random (dy, dx) in [-shift, shift]^2."""
        k = self.random_shift
        if k == 0 or x.shape[0] == 0:
            return x
        b, _, h, w = x.shape
        padded = torch.nn.functional.pad(x, (k, k, k, k), mode="replicate")
        offsets = torch.randint(0, 2 * k + 1, (b, 2))
        return torch.stack(
            [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())]
        )

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.channels, self.size, self.size)

    def settings(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
            "max_pixels": self.max_pixels,
            "interpolation": self.interpolation,
            "random_shift": self.random_shift,
            "crop_pct": self.crop_pct,
        }

    def encoder_kwargs(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "image_size": self.size}


def _as_uint8(a: np.ndarray) -> np.ndarray:
    """An (H, W) or (H, W, 1|3|4) image array as uint8: floats in [0, 1], integers in [0, 255]."""
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or a.size == 0 or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise DataError(
            f"image array has shape {a.shape}; give (H, W) or (H, W, C) with C = 1, 3 or 4",
            reason="wrong_shape",
        )
    if a.dtype == np.bool_:
        return np.ascontiguousarray(a, dtype=np.uint8) * 255
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise DataError("image array holds NaN or inf", reason="non_finite")
        if a.min() < 0 or a.max() > 1:
            raise DataError(
                f"float image values must be in [0, 1], got [{a.min():g}, {a.max():g}]; "
                "divide by 255, or pass a uint8 array",
                reason="bad_image",
            )
        return np.ascontiguousarray(np.rint(a * 255.0), dtype=np.uint8)
    if np.issubdtype(a.dtype, np.integer):
        if a.min() < 0 or a.max() > 255:
            raise DataError(
                f"integer image values must be in [0, 255], got [{a.min()}, {a.max()}]; "
                "scale 16-bit images to 8 bits first",
                reason="bad_image",
            )
        return np.ascontiguousarray(a, dtype=np.uint8)
    raise DataError(f"image array of dtype {a.dtype} is not an image", reason="wrong_type")


def _per_channel(values: tuple[float, ...], channels: int) -> list[float]:
    if len(values) == 1:
        return [float(values[0])] * channels
    if len(values) != channels:
        raise ConfigError(
            f"image normalisation has {len(values)} values for {channels} channels; give 1 or {channels}"
        )
    return [float(v) for v in values]
