"""One closed registry of names: ``@register("objective", "clip")``.

The registry is a plain table: it imports nothing. The packages that define encoders, fusion
modules and objectives register them when they are imported, and the builders
(:mod:`modalign.workflows.build`) import those packages. Config validation only needs the *names*,
so :data:`BUILTIN` lists the built-in ones statically (a test keeps it equal to what the packages
register) and :func:`check_name` validates a name without importing torch or any model module.

A duplicate name raises; an unknown name raises with the available names and close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from modalign.errors import RegistryError

T = TypeVar("T")

# Built-in names per kind, as the packages register them (tests/test_layers.py pins the equality).
BUILTIN: dict[str, tuple[str, ...]] = {
    "encoder": (
        "audio_cnn",
        "efficientnet_lite",
        "hf_text",
        "hf_vision",
        "identity",
        "image_cnn",
        "image_vit",
        "mlp",
        "open_clip_image",
        "open_clip_text",
        "sentence_transformers",
        "tabular_mlp",
        "text_transformer",
        "timeseries_conv",
        "timeseries_gru",
        "timm",
        "torchscript",
    ),
    "fusion": ("attention", "concat", "lego", "multimodn"),
    "objective": (
        "affinity_distillation",
        "alignment",
        "clip",
        "cross_uniformity",
        "cua",
        "cuaxu",
        "cwcl",
        "dcl",
        "dclw",
        "feature_distillation",
        "m2mix",
        "m3co",
        "momentum_itc",
        "siglip",
        "soft_clip",
        "symile",
        "uniformity",
    ),
}

_REGISTRIES: dict[str, dict[str, Any]] = {}


def register(kind: str, name: str) -> Callable[[T], T]:
    """Register ``obj`` under ``kind``/``name``; raises :class:`RegistryError` on a duplicate."""

    def decorator(obj: T) -> T:
        table = _REGISTRIES.setdefault(kind, {})
        if name in table:
            raise RegistryError(f"{kind} {name!r} is already registered")
        table[name] = obj
        return obj

    return decorator


def lookup(kind: str, name: str) -> Any:
    """Return what was registered as ``kind``/``name`` (its package must have been imported)."""
    table = _REGISTRIES.get(kind, {})
    if name not in table:
        check_name(kind, name)  # unknown: raises with close matches
        raise RegistryError(
            f"{kind} {name!r} is built in but not registered yet: import its package "
            f"(modalign.workflows.build does) before looking it up"
        )
    return table[name]


def check_name(kind: str, name: str) -> None:
    """Raise :class:`RegistryError` unless ``name`` is a known ``kind`` (imports nothing)."""
    known = set(BUILTIN.get(kind, ())) | set(_REGISTRIES.get(kind, {}))
    if name not in known:
        close = difflib.get_close_matches(name, sorted(known), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RegistryError(f"unknown {kind} {name!r}; available: {', '.join(sorted(known)) or 'none'}{hint}")


def names(kind: str) -> list[str]:
    """Sorted names registered under ``kind`` (of the packages imported so far)."""
    return sorted(_REGISTRIES.get(kind, {}))
