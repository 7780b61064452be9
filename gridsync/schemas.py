"""JSON Schema files for the wire types, generated from the msgspec Structs (never hand-edited).

``gridsync schemas`` writes one file per wire type into ``schemas/``; ``--check`` fails when any
file differs from what the Structs generate now (a test runs it)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from gridsync import models


def wire_types() -> list[type]:
    """Every type the phone app or an admin client reads or sends (``models.WIRE_TYPES``)."""
    return list(models.WIRE_TYPES)


def default_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "schemas"


def render() -> dict[str, bytes]:
    """File name -> content, one self-contained schema per type."""
    types = wire_types()
    (refs, components) = msgspec.json.schema_components(types, ref_template="#/$defs/{name}")
    out: dict[str, bytes] = {}
    for ref in refs:
        name = ref["$ref"].rsplit("/", 1)[-1]
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": name,
            **components[name],
        }
        needed = _referenced(components, name)
        needed.discard(name)
        if needed:
            schema["$defs"] = {n: components[n] for n in sorted(needed)}
        encoded = msgspec.json.format(msgspec.json.encode(schema), indent=2) + b"\n"
        out[f"{name}.json"] = encoded
    return out


def _referenced(components: dict, name: str) -> set[str]:
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        stack.extend(_refs_in(components[current]))
    return seen


def _refs_in(node: object) -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value.rsplit("/", 1)[-1])
            else:
                found.extend(_refs_in(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_refs_in(item))
    return found


def write(directory: Path) -> list[str]:
    directory.mkdir(parents=True, exist_ok=True)
    files = render()
    for name, content in files.items():
        (directory / name).write_bytes(content)
    for stale in set(p.name for p in directory.glob("*.json")) - set(files):
        (directory / stale).unlink()
    return sorted(files)


def stale(directory: Path) -> list[str]:
    """Names of files that are missing, different or no longer generated."""
    files = render()
    problems = [
        name
        for name, content in files.items()
        if not (directory / name).exists() or (directory / name).read_bytes() != content
    ]
    problems += sorted(p.name for p in directory.glob("*.json") if p.name not in files)
    return sorted(problems)
