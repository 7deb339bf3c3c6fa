"""Time-series payloads -> (T, C) float tensors, and padding collation with a length mask.

A manifest cell holds a list of numbers (one channel), a list of lists (T rows of C channels), or
a path to a ``.npy`` / ``.csv`` file (relative paths resolve against the manifest's directory).
Bad files and non-finite values raise :class:`~modalign.errors.DataError`; NaN is never data.

Collation pads to the longest sequence with ``pad_value`` (NaN by default, so encoders that only
receive the tensor can recover the length mask; see :mod:`modalign.encoders.timeseries`), and
:meth:`TimeSeriesTransform.mask` gives the explicit (B, T) mask.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalign.data.transforms._files import resolve_file
from modalign.data.transforms.base import Transform
from modalign.errors import DataError


class TimeSeriesTransform(Transform):
    """Load and collate time series.

    Args:
        channels: expected channel count C; None accepts any (but collation needs equal C).
        max_length: keep at most this many leading time steps; None keeps all.
        pad_value: value of padded steps in :meth:`collate`.

    Example:
        >>> t = TimeSeriesTransform()
        >>> xs = [t.load([1, 2, 3], "."), t.load([4, 5], ".")]
        >>> t.collate(xs).shape, t.mask(xs).tolist()
        (torch.Size([2, 3, 1]), [[True, True, True], [True, True, False]])
    """

    def __init__(
        self,
        channels: int | None = None,
        max_length: int | None = None,
        pad_value: float = math.nan,
    ):
        if channels is not None and channels < 1:
            raise DataError(f"channels must be >= 1, got {channels}", reason="bad_config")
        if max_length is not None and max_length < 1:
            raise DataError(f"max_length must be >= 1, got {max_length}", reason="bad_config")
        self.channels, self.max_length, self.pad_value = channels, max_length, pad_value

    kind = "timeseries"

    def placeholder(self) -> torch.Tensor:
        return torch.full((1, self.channels or 1), self.pad_value)

    def settings(self) -> dict[str, Any]:
        return {"channels": self.channels, "max_length": self.max_length}

    def encoder_kwargs(self) -> dict[str, Any]:
        return {"in_channels": self.channels or 1}

    def load(self, payload: Any, base_dir: str | Path) -> torch.Tensor:
        """One payload -> (T, C) float32 tensor.

        Raises:
            DataError: missing/unreadable file, unsupported suffix, empty or >2-D array,
                non-numeric or non-finite values, wrong channel count.
        """
        path: str | None = None
        if isinstance(payload, (str, Path)):
            p = resolve_file(payload, Path(base_dir))
            path = str(p)
            arr = self._read_file(p)
        else:
            try:
                arr = np.asarray(payload, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise DataError(
                    "time series must be numbers or lists of numbers of equal length",
                    reason="bad_value",
                ) from None
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise DataError(
                f"time series must be 1-D or 2-D (T, C), got shape {arr.shape}",
                reason="bad_shape",
                path=path,
            )
        if arr.shape[0] == 0 or arr.shape[1] == 0:
            raise DataError("time series is empty", reason="empty", path=path)
        if not np.isfinite(arr).all():
            bad = int(np.argwhere(~np.isfinite(arr))[0][0])
            raise DataError(
                f"time series has a NaN/inf value at step {bad}; drop or fill it before loading",
                reason="nan",
                path=path,
            )
        if self.channels is not None and arr.shape[1] != self.channels:
            raise DataError(
                f"time series has {arr.shape[1]} channels, expected {self.channels}",
                reason="bad_shape",
                path=path,
            )
        if self.max_length is not None:
            arr = arr[: self.max_length]
        return torch.as_tensor(arr, dtype=torch.float32)

    @staticmethod
    def _read_file(p: Path) -> np.ndarray:
        suffix = p.suffix.lower()
        try:
            if suffix == ".npy":
                arr = np.load(p, allow_pickle=False)
            elif suffix == ".csv":
                try:
                    arr = np.loadtxt(p, delimiter=",", ndmin=1, dtype=np.float64)
                except ValueError:
                    # One header line is common; anything else non-numeric is an error below.
                    arr = np.loadtxt(p, delimiter=",", ndmin=1, dtype=np.float64, skiprows=1)
            else:
                raise DataError(
                    f"unsupported time series file type {suffix!r}; use .npy or .csv",
                    reason="bad_file",
                    path=str(p),
                )
        except DataError:
            raise
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read time series file: {e}", reason="bad_file", path=str(p)) from e
        if not np.issubdtype(arr.dtype, np.number):
            raise DataError(
                f"time series file holds {arr.dtype}, not numbers", reason="bad_file", path=str(p)
            )
        return arr.astype(np.float64)

    def collate(self, series: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """(T_i, C) tensors -> (B, T_max, C), padded with ``pad_value`` (None = absent row).

        Raises:
            DataError: an empty list or sequences with different channel counts.
        """
        if len(series) == 0:
            raise DataError("cannot collate an empty list of time series", reason="empty")
        items = [self.placeholder() if s is None else s for s in series]
        chans = {int(s.shape[1]) for s in items}
        if len(chans) != 1:
            raise DataError(
                f"time series in one batch have different channel counts {sorted(chans)}",
                reason="bad_shape",
            )
        t_max = max(int(s.shape[0]) for s in items)
        out = torch.full((len(items), t_max, chans.pop()), self.pad_value, dtype=torch.float32)
        for i, s in enumerate(items):
            out[i, : s.shape[0]] = s
        return out

    def mask(self, series: Sequence[torch.Tensor]) -> torch.Tensor:
        """(B, T_max) bool, True at real (unpadded) steps."""
        lengths = torch.tensor([int(s.shape[0]) for s in series])
        t_max = int(lengths.max()) if len(series) else 0
        return torch.arange(t_max)[None, :] < lengths[:, None]
