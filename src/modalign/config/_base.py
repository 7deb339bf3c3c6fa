"""The base of every config section: unknown keys, NaN and inf are errors; a validated section is frozen."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    # NaN/inf are never a setting (an inf lr passes gt=0 and trains NaNs)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
