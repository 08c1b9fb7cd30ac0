"""`key=value` overrides of a YAML config, with dotted paths into lists: `datasets.0.path=x`.

axolotl's own CLI (`--key value`, `--parent__child value`) reaches neither list items nor deeper
levels; here an override lands in the config that is then checked (a mistyped key is an error)
and saved next to the model.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")  # 1e-5: YAML 1.1 reads it as a string


class OverrideError(ValueError):
    pass


def parse_value(text: str) -> Any:
    """YAML typing (`true`, `3`, `[a, b]`, `null`), and `1e-5` as a float."""
    value = yaml.safe_load(text) if text.strip() else ""
    if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def _index(node: list, part: str, item: str) -> int:
    if not part.isdigit() or int(part) > len(node):
        raise OverrideError(f"override {item!r}: '{part}' is not an index of a list of {len(node)}")
    return int(part)


def apply_overrides(cfg: dict, overrides: list[str]) -> dict:
    """A copy of `cfg` with each `a.b.0.c=value` set; missing mapping keys are created, and a list
    grows by one when the index equals its length (`datasets.1.path=...` adds a dataset)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise OverrideError(f"override {item!r}: expected key=value, e.g. datasets.0.path=data.jsonl")
        parts = key.split(".")
        node: Any = cfg
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                i = _index(node, part, item)
                if i == len(node):
                    node.append({})
                node = node[i]
            elif isinstance(node, dict):
                node = node.setdefault(part, [] if parts[depth + 1].isdigit() else {})
            else:
                raise OverrideError(f"override {item!r}: '{'.'.join(parts[:depth])}' holds "
                                    f"{type(node).__name__}, not a mapping or a list")
        value, last = parse_value(text), parts[-1]
        if isinstance(node, list):
            i = _index(node, last, item)
            node[i:i + 1] = [value]
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise OverrideError(f"override {item!r}: '{'.'.join(parts[:-1])}' holds "
                                f"{type(node).__name__}, not a mapping or a list")
    return cfg


def key_lines(text: str) -> dict[tuple, int]:
    """The 1-based line of every key (and list item) in a YAML text, by key path."""
    lines: dict[tuple, int] = {}

    def walk(node: yaml.Node, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = (*path, key_node.value)
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, i)] = item.start_mark.line + 1
                walk(item, (*path, i))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines
