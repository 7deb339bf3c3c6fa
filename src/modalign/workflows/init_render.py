"""``modalign init``'s output: block YAML for sections and modalities, flow YAML inside them, the
reason for every inferred choice as a comment above its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from modalign.data.manifest import Manifest
from modalign.workflows.init_plan import Plan


def header(manifest: str | Path, m: Manifest, plan: Plan, out: str) -> str:
    lines = wrap(
        [
            f"Written by `modalign init {manifest}` ({len(m.rows)} rows). Each choice is a guess from "
            "the data; the comment above it says why. Relative paths in a config start at the "
            "working directory, file paths in the manifest at the manifest's folder. Check the data "
            "with the config, then train:"
        ]
    )
    lines += [f"  modalign data check {manifest} --config {out}", f"  modalign train {out}"]
    unused = [f for f in plan.findings if f.use == "not used"]
    if unused:
        lines += ["Columns not used:"] + wrap([f"{f.column}: {f.reason}" for f in unused], indent="  ")
    return "".join(f"# {line}\n" for line in lines)


def wrap(paragraphs: list[str], width: int = 98, indent: str = "") -> list[str]:
    """Lines of at most ``width`` characters (``indent`` before each paragraph's first line)."""
    out = []
    for text in paragraphs:
        line, first = text, True
        while len(line) + len(indent) * first > width:
            cut = line.rfind(" ", 0, width - len(indent) * first)
            cut = cut if cut > 0 else width
            out.append(indent * first + line[:cut])
            line, first = line[cut:].lstrip(), False
        out.append(indent * first + line)
    return out


def render(
    node: dict[str, Any], comments: dict[tuple[str, ...], list[str]], path: tuple[str, ...] = ()
) -> list[str]:
    """Block YAML for sections and modalities, flow YAML inside them, comments above the keys."""
    pad = "  " * len(path)
    lines: list[str] = []
    for key, value in node.items():
        p = (*path, str(key))
        lines += [f"{pad}# {c}" for c in wrap(comments.get(p, []), 98 - len(pad))]
        block = len(p) == 1 or (len(p) == 2 and p[0] == "modalities")
        if block and isinstance(value, dict) and value:
            lines.append(f"{pad}{flow(key)}:")
            lines += render(value, comments, p)
        elif block and isinstance(value, list) and value:
            lines.append(f"{pad}{flow(key)}:")
            lines += [f"{pad}  - {flow(item)}" for item in value]
        else:
            lines.append(f"{pad}{flow(key)}: {flow(value)}")
    return lines


def flow(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, sort_keys=False)
    return text.removesuffix("\n...\n").strip()
