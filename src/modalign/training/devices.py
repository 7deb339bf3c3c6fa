"""Where training runs and in which precision: device names, autocast, every device's RNG state.

``trainer.device`` and ``trainer.precision`` are validated as strings by the config (which imports
no torch); this module turns them into a :class:`torch.device` and a forward-pass context, and
refuses the combinations that cannot run here (a missing GPU, fp16 on a CPU) with a
:class:`~modalign.errors.ConfigError` naming both fields.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

import torch

from modalign.errors import ConfigError

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_CUDA = re.compile(r"^cuda(?::(\d+))?$")


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available, else mps if available, else cpu; other names are checked.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``trainer.device``).

    Raises:
        ConfigError: an unknown name, or a device this machine does not have.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError("trainer.device=mps but MPS is not available here; use auto or cpu")
        return torch.device("mps")
    m = _CUDA.match(name)
    if m is None:
        raise ConfigError(f"trainer.device must be auto, cpu, cuda, cuda:N or mps, got {name!r}")
    if not torch.cuda.is_available():
        raise ConfigError(f"trainer.device={name} but CUDA is not available here; use auto or cpu")
    if m.group(1) is None:
        return torch.device("cuda")
    if int(m.group(1)) >= torch.cuda.device_count():
        raise ConfigError(
            f"trainer.device={name} but this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return torch.device("cuda", int(m.group(1)))


def check_precision(device: torch.device, precision: str) -> None:
    """Refuse a ``trainer.precision`` that ``device`` cannot run.

    Raises:
        ConfigError: fp16 on a CPU (no loss scaling there; use bf16), bf16 on a CUDA device
            without bf16 support, or an unknown precision.
    """
    if precision not in ("fp32", "bf16", "fp16"):
        raise ConfigError(f"trainer.precision must be fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and device.type == "cpu":
        raise ConfigError(
            "trainer.precision=fp16 needs a GPU, but trainer.device resolved to cpu; "
            "use trainer.precision=bf16 (or fp32) on a CPU"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"trainer.precision=bf16: {device} has no bfloat16 support; use fp16")


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """The context for forward passes and losses: autocast to bf16/fp16, or explicitly off for fp32.

    fp32 disables autocast (rather than doing nothing), so an fp32 trainer stays fp32 even when
    called inside someone else's autocast region.
    """
    dtype = _DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def rng_states() -> dict[str, torch.Tensor]:
    """Every device's torch RNG state: ``torch`` (CPU), ``cuda/{i}`` per device, ``mps``.

    CUDA states are included only once CUDA is initialised (a CPU run never touched them, and
    reading them would initialise CUDA).
    """
    out = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            out[f"cuda/{i}"] = state
    if torch.backends.mps.is_available():
        out["mps"] = torch.mps.get_rng_state()
    return out


def set_rng_states(states: Mapping[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_states` captured (CPU tensors, e.g. read from a checkpoint).

    States of devices this machine lacks are skipped: a run moved to another machine continues
    with fresh streams there; bit-exact resume holds on the same device.
    """
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            if f"cuda/{i}" in states:
                torch.cuda.set_rng_state(states[f"cuda/{i}"], i)
    if "mps" in states and torch.backends.mps.is_available():
        torch.mps.set_rng_state(states["mps"])
