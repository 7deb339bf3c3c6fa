"""One closed registry of names: ``@register("objective", "clip")``.

A duplicate name raises; an unknown name raises with the available names and close matches.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from modalign.errors import RegistryError

T = TypeVar("T")

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
    """Return what was registered as ``kind``/``name``."""
    _ensure_builtins()
    table = _REGISTRIES.get(kind, {})
    if name not in table:
        close = difflib.get_close_matches(name, list(table), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RegistryError(f"unknown {kind} {name!r}; available: {', '.join(sorted(table)) or 'none'}{hint}")
    return table[name]


def names(kind: str) -> list[str]:
    """Sorted names registered under ``kind``."""
    _ensure_builtins()
    return sorted(_REGISTRIES.get(kind, {}))


def _ensure_builtins() -> None:
    # Importing the packages runs their @register decorators; done lazily so that importing
    # modalign (or running `modalign --help`) stays cheap.
    import modalign.encoders  # noqa: F401
    import modalign.fusion  # noqa: F401
    import modalign.objectives  # noqa: F401
