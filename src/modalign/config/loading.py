"""Reading a config: YAML, ``--set`` overrides, validation, and messages that name the field."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from modalign.config.experiment import ExperimentConfig
from modalign.config.overrides import _field_type, apply_override
from modalign.config.transforms import _TRANSFORMS
from modalign.errors import ConfigError


def _message(err: Mapping[str, Any], root: Any, prefix: tuple[Any, ...] = ()) -> str:
    """pydantic's message; an unknown key gets "did you mean" (or the fields its section accepts)."""
    loc = tuple(err["loc"])
    if err.get("type") != "extra_forbidden" or not loc:
        return str(err["msg"])
    owner = root
    for part in loc[:-1]:
        owner = _field_type(owner, part)
    fields = list(getattr(owner, "model_fields", {}))
    section = ".".join(str(p) for p in prefix + loc[:-1])
    if not fields:
        return "unknown field"
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {section + '.' if section else ''}{close[0]}?"
    return f"unknown field; {section or 'the config'} accepts: {', '.join(fields)}"


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    *,
    raw: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Read a YAML config (or a raw dict), apply ``--set`` overrides and validate it.

    Raises:
        ConfigError: unreadable file or a field that fails validation (the message names it).
    """
    if raw is None:
        if path is None:
            raise ConfigError("a config path or a raw dict is required")
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, ValueError, RecursionError, yaml.YAMLError) as e:  # ValueError: not UTF-8
            raise ConfigError(f"cannot read config {path}: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a mapping at the top level")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    lines = _transform_errors(raw)
    if not lines:
        try:
            return ExperimentConfig.model_validate(raw)
        except ValidationError as e:
            lines = [_line(err["loc"], _message(err, ExperimentConfig)) for err in e.errors()]
    raise ConfigError(f"invalid config {path or ''}:\n" + "\n".join(lines))


def _line(loc: tuple[Any, ...] | list[Any], msg: str) -> str:
    where = ".".join(str(p) for p in loc)
    return f"  {where}: {msg}" if where else f"  {msg}"


def _transform_errors(raw: dict[str, Any]) -> list[str]:
    # Transform settings are validated by the schema of the modality's kind; doing it here keeps
    # the full dotted path (modalities.NAME.transform.FIELD) in the message.
    modalities = raw.get("modalities")
    if not isinstance(modalities, dict):
        return []
    lines = []
    for name, m in modalities.items():
        if not isinstance(m, dict) or not isinstance(m.get("kind"), str) or m["kind"] not in _TRANSFORMS:
            continue
        if m.get("transform") is None:
            continue
        if not isinstance(m["transform"], dict):
            where = ("modalities", name, "transform")
            lines.append(_line(where, f"must be a mapping of {m['kind']} settings, got {m['transform']!r}"))
            continue
        try:
            _TRANSFORMS[m["kind"]].model_validate(m["transform"])
        except ValidationError as e:
            where = ("modalities", name, "transform")
            lines += [
                _line((*where, *err["loc"]), _message(err, _TRANSFORMS[m["kind"]], where))
                for err in e.errors()
            ]
    return lines
