"""YAML configs parsed into dataclasses, with `key=value` command-line overrides.

Every inference-stage CLI (generate, evaluate, pairs) declares a dataclass whose fields carry
`metadata={"help": ...}`; `parse_cli` gives it `--help`, a `--config FILE`, overrides such as
`sampling.temperature=0.7`, and errors that name the file, the line and the field (a typo in a
key is an error with a suggestion, never silently ignored).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    pass


def _where(source: str, line: int | None) -> str:
    return f"{source}, line {line}" if line else source


def _coerce(value: Any, tp: Any, field: str, source: str, line: int | None, lines: dict) -> Any:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, field, source, line, lines)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{_where(source, line)}: field '{field}': {value!r} is not one of "
                              f"{list(args)}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            value = [value]
        item = args[0] if args else Any
        return [_coerce(v, item, f"{field}[{i}]", source, line, lines) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(source, line)}: field '{field}': expected a mapping")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{_where(source, line)}: field '{field}': expected a mapping")
        return build(tp, value, source, prefix=field + ".", lines=lines)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{_where(source, line)}: field '{field}': expected true or false, got {value!r}")
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{_where(source, line)}: field '{field}': expected {getattr(tp, '__name__', tp)}, "
                      f"got {value!r}")


class _LineLoader(yaml.SafeLoader):
    """Records the line of every mapping key, so errors can point at it."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        mapping[key] = loader.construct_object(value_node, deep=True)
        loader.lines[id(mapping), key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def build(cls: type[T], data: dict, source: str, prefix: str = "", lines: dict | None = None) -> T:
    """Make a `cls` from a mapping; unknown keys and bad values raise ConfigError."""
    lines = lines if lines is not None else {}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        line = lines.get((id(data), key))
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{_where(source, line)}: unknown field '{prefix}{key}'{hint}")
        kwargs[key] = _coerce(value, hints[key], prefix + key, source, line, lines)
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_yaml(path: str | Path) -> tuple[dict, dict]:
    """Returns (mapping, key-line table)."""
    text = Path(path).read_text(encoding="utf-8")
    loader = _LineLoader(text)
    loader.lines = {}
    try:
        data = loader.get_single_data() or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data, loader.lines


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"command line: '{dotted}': '{p}' is not a section")
    node[last] = value


def _help_lines(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _help_lines(tp, prefix + f.name + ".")
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "(required)")
        out.append(f"  {prefix}{f.name} = {default!r}\n      {f.metadata.get('help', '')}")
    return out


def parse_cli(cls: type[T], argv: list[str] | None, description: str) -> T:
    """`prog [--config FILE] [key=value ...]`: YAML first, then overrides, then validation."""
    epilog = "config fields (set in the YAML file or as key=value):\n" + "\n".join(_help_lines(cls))
    ap = argparse.ArgumentParser(description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, help="YAML file with any of the fields below")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="override a field, e.g. sampling.temperature=0.7 (values are parsed as YAML)")
    args = ap.parse_args(argv)
    data, lines, source = {}, {}, "command line"
    if args.config:
        data, lines = load_yaml(args.config)
        source = str(args.config)
    for item in args.overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            ap.error(f"override '{item}' is not key=value")
        _set_dotted(data, key.strip(), yaml.safe_load(raw) if raw else "")
    try:
        return build(cls, data, source, lines=lines)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


def to_dict(obj: Any) -> Any:
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
