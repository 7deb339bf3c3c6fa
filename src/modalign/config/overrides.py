"""``--set a.b.c=value``: edits of a raw config dict before it is validated."""

from __future__ import annotations

from types import UnionType
from typing import Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from modalign.config.experiment import ExperimentConfig
from modalign.errors import ConfigError


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to a raw config dict in place.

    A number addresses an item of a list (``objectives.0.weight=0.5``); one past the end appends
    one. A list the config leaves out starts from the schema's default (``objectives.0.name=siglip``
    replaces the default ``clip``). A number that is an integer key of a mapping stays an integer
    (``eval.robustness.mnar_drop.worst.0=0.8``).
    """
    if "=" not in assignment:
        raise ConfigError(f"--set expects KEY=VALUE, got {assignment!r}")
    key, value = assignment.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if "" in parts:
        raise ConfigError(f"--set {key}: empty field name; write a.b.c=value")
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError as e:
        problem = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"--set {assignment}: the value is not valid YAML ({problem}); quote it") from None
    node: Any = raw
    for depth, part in enumerate(parts):
        where, last = ".".join(parts[:depth]), depth == len(parts) - 1
        if isinstance(node, list):
            slot: Any = _list_index(node, part, key, where)
            if slot == len(node):
                node.append(parsed if last else {})
        elif isinstance(node, dict):
            slot = int(part) if part not in node and _is_int(part) and int(part) in node else part
            if not last and node.get(slot) is None:
                node[slot] = _seed(parts[: depth + 1], _is_int(parts[depth + 1]))
        else:
            raise ConfigError(f"--set {key}: {where} is {node!r}, not a section or a list")
        if last:
            node[slot] = parsed
            return
        node = node[slot]


def _is_int(part: str) -> bool:
    return part.lstrip("-").isdigit()


def _list_index(items: list[Any], part: str, key: str, where: str) -> int:
    span = f"from 0 to {len(items)} ({len(items)} appends one)"
    if not _is_int(part):
        raise ConfigError(
            f"--set {key}: {where} is a list; address its items by index {span}, e.g. {where}.0"
        )
    i = int(part)
    if not 0 <= i <= len(items):
        raise ConfigError(f"--set {key}: {where} has {len(items)} item(s); use an index {span}")
    return i


def _seed(parts: list[str], list_next: bool) -> Any:
    """A section that ``--set`` creates: the schema's default when it is a list, else empty."""
    owner: Any = ExperimentConfig
    for part in parts[:-1]:
        owner = _field_type(owner, part)
    fields = getattr(owner, "model_fields", {})
    if list_next and parts[-1] in fields:
        default = fields[parts[-1]].get_default(call_default_factory=True)
        if isinstance(default, (tuple, list)):
            return [d.model_dump(mode="json") if isinstance(d, BaseModel) else d for d in default]
    return [] if list_next else {}


def _field_type(tp: Any, part: Any) -> Any:
    """The type of item ``part`` of a value of type ``tp`` (a model, dict, tuple or optional)."""
    if get_origin(tp) in (Union, UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        field = tp.model_fields.get(str(part))
        return None if field is None else field.annotation
    args = get_args(tp)
    if get_origin(tp) is dict and len(args) == 2:
        return args[1]
    if get_origin(tp) in (tuple, list) and args:
        return args[0]
    return None
