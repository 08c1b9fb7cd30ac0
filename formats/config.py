"""The one configuration loader of every CLI: a YAML file, then `key=value` overrides, into dataclasses.

    prog --config FILE [key=value ...]      e.g.  evaluate.sets.1.path=x  sampling.temperature=0.7

- keys are dotted paths; a number steps into a list (`datasets.0.path`), and the index equal to
  the list's length appends an item;
- values are read as YAML (`true`, `3`, `[a, b]`, `null`), plus `1e-5` as a float (YAML 1.1 reads
  it as a string), then checked against the field's type (int, float, bool, str, Literal, Enum,
  Optional/unions, lists, dicts, nested dataclasses);
- an unknown key is an error with a did-you-mean, and every error names where the value came
  from: `FILE, line N` or `override 'k=v'`, in the one shape
  `<where>: unknown key 'a.b' (did you mean 'a.c'?)` / `<where>: key 'a.b': expected int, got 'x'`.

Used by the pipeline (`scripts/pipeline.py`), the inference CLIs, the alignment CLIs (TRL's own
config dataclasses, built here instead of by `TrlParser`) and the SFT stage (axolotl's config is a
pydantic schema, not a dataclass: it takes `read_yaml` + `apply_overrides` and checks the keys in
`SFT/check_config.py` with `unknown_key`). It lives in `formats/` because a YAML config is a file
that stages read, and `formats/` is the one package every stage environment imports while no
stage imports another. Needs PyYAML, which every stage environment has.

Why our own code and not a maintained library (compared 2026-12-05, against the needs above):
- OmegaConf 2.3 structured configs have dotlist overrides with list indices and struct mode, but
  errors carry no file line and no suggestion, `Literal` and unions of non-None types are not
  supported (TRL's `TrainingArguments` has `Union[dict, str]`, `Union[str, list[str]]` fields), and
  it pins `antlr4-python3-runtime==4.9.*`, which the inference stage cannot take (its LaTeX
  parsing needs 4.11, see requirements_inference.txt).
- TRL's `TrlParser` / HF's `HfArgumentParser`: flat `--key value` only (no nested sections, no list
  indices), an unknown YAML key reported without line or suggestion, and the alignment stage only.
- axolotl's CLI (`--key value`, `--a__b value`): no list items, axolotl only.
- pydantic (`TypeAdapter` over dataclasses): typed coercion, but lax string-to-number coercion,
  no line numbers, no did-you-mean, and not in every environment.
What remains is small (below): a type walk over dataclass fields and a YAML key-line table.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import enum
import re
import sys
import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import yaml

T = TypeVar("T")
KeyPath = tuple[str | int, ...]
Where = dict[KeyPath, str]  # key path -> "FILE, line N" or "override 'k=v'"

_FLOAT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+")


class ConfigError(ValueError):
    """A bad config or override; the message says where it came from."""


def dotted(path: Iterable[str | int]) -> str:
    return ".".join(str(p) for p in path)


def locate(where: Where, path: KeyPath, default: str) -> str:
    """The origin of `path`, or of its nearest enclosing key that has one."""
    for cut in range(len(path), 0, -1):
        if path[:cut] in where:
            return where[path[:cut]]
    return default


def unknown_key(origin: str, path: KeyPath, known: Iterable[str]) -> str:
    """The one error text for a key nothing reads, with the closest known key at the same level."""
    close = difflib.get_close_matches(str(path[-1]), list(known), n=1)
    hint = f" (did you mean '{dotted((*path[:-1], close[0]))}'?)" if close else ""
    return f"{origin}: unknown key '{dotted(path)}'{hint}"


# --- reading ----------------------------------------------------------------------------------
def read_yaml(path: str | Path) -> tuple[dict, Where]:
    """The mapping in a YAML file and the line of each key (and list item), by key path."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    where: Where = {}

    def walk(node: yaml.Node, at: KeyPath) -> None:
        items = (((k.value, v), k) for k, v in node.value) if isinstance(node, yaml.MappingNode) else (
            ((i, v), v) for i, v in enumerate(node.value)) if isinstance(node, yaml.SequenceNode) else ()
        for (key, value), mark in items:
            where[(*at, key)] = f"{path}, line {mark.start_mark.line + 1}"
            walk(value, (*at, key))

    walk(root, ())
    return data, where


def parse_value(text: str) -> Any:
    """An override's value: YAML typing (`true`, `3`, `[a, b]`, `null`), and `1e-5` as a float."""
    if not text.strip():
        return ""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return float(value) if isinstance(value, str) and _FLOAT.fullmatch(value.strip()) else value


def _field_default(cls: Any, name: str) -> Any:
    """A dataclass field's default as plain data (so an override can step into it), else None."""
    if isinstance(cls, tuple):
        return next((d for d in (_field_default(c, name) for c in cls) if d is not None), None)
    if not dataclasses.is_dataclass(cls):
        return None
    for f in dataclasses.fields(cls):
        if f.name == name:
            value = (f.default if f.default is not dataclasses.MISSING else
                     f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            return to_dict(value)
    return None


def _field_type(cls: Any, key: str | int) -> Any:
    """The type a key of `cls` holds (a dataclass field's, a list's item type), or None."""
    if isinstance(cls, tuple):
        return next((t for t in (_field_type(c, key) for c in cls) if t is not None), None)
    origin = get_origin(cls)
    if origin in (typing.Union, types.UnionType):
        found = [t for t in (_field_type(a, key) for a in get_args(cls)) if t is not None]
        return found[0] if found else None
    if origin in (list, tuple) and isinstance(key, int):
        return (get_args(cls) or (None,))[0]
    if dataclasses.is_dataclass(cls):
        return _hints(cls).get(key)
    return None


def _text_field(tp: Any) -> bool:
    """A field that holds words, never a bool or a number: `eval_strategy=no` means the word "no"."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_text_field(a) for a in args) and not any(a in (bool, int, float) for a in args)
    if origin is Literal:
        return all(isinstance(a, str) for a in args)
    return tp is str or (isinstance(tp, type) and issubclass(tp, enum.Enum))


def apply_overrides(data: dict, overrides: Iterable[str], where: Where | None = None,
                    schema: Any = None) -> dict:
    """A copy of `data` with each `a.b.0.c=value` set, and `where` marking each as an override.

    `schema` (a dataclass or a tuple of them) guides two things: a missing section is created from
    its default (so `sets.1.path` reaches into a default list), and a text field keeps the word as
    written. An index equal to a list's length appends. Unknown keys are left for `build` (or the
    caller's schema check) to report."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, text = item.partition("=")
        parts: list[str | int] = [int(p) if p.isdigit() else p for p in key.strip().split(".")]
        origin = f"override {item!r}"
        if not sep or "" in parts:
            raise ConfigError(f"{origin}: expected key=value, e.g. sampling.temperature=0.7")
        node: Any = data
        tp = schema
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            value = parse_value(text) if last else None
            if last and isinstance(value, bool | int | float) and _text_field(_field_type(tp, part)):
                value = text.strip()  # a text field takes the word as written (`no`, `007`)
            if isinstance(node, list):
                if not isinstance(part, int) or part > len(node):
                    raise ConfigError(f"{origin}: '{dotted(parts[:depth])}' is a list of {len(node)}: "
                                      f"'{part}' is not an index of it (0..{len(node)})")
                if part == len(node):
                    node.append({})
                if last:
                    node[part] = value
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                elif part not in node or node[part] is None:
                    default = _field_default(tp, part)
                    node[part] = default if default is not None else [] if isinstance(parts[depth + 1], int) else {}
            else:
                raise ConfigError(f"{origin}: '{dotted(parts[:depth])}' holds a {type(node).__name__}, "
                                  "not a section or a list")
            if not last:
                node, tp = node[part], _field_type(tp, part)
        if where is not None:
            path = tuple(parts)
            for sub in [k for k in where if k[:len(path)] == path]:
                del where[sub]
            where[path] = origin
    return data


def merge(base: dict, top: dict) -> dict:
    """`top` over `base`, section by section (lists and values are replaced whole)."""
    out = dict(base)
    for key, value in top.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# --- building dataclasses ---------------------------------------------------------------------
def _hints(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(cls) if f.init}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _Builder:
    def __init__(self, where: Where, source: str):
        self.where, self.source = where, source

    def fail(self, path: KeyPath, problem: str) -> ConfigError:
        return ConfigError(f"{locate(self.where, path, self.source)}: key '{dotted(path)}': {problem}")

    def coerce(self, value: Any, tp: Any, path: KeyPath) -> Any:
        origin, args = get_origin(tp), get_args(tp)
        if tp is Any or tp is object:
            return value
        if origin in (typing.Union, types.UnionType):
            if value is None and type(None) in args:
                return None
            errors = []
            for arg in (a for a in args if a is not type(None)):
                try:
                    return self.coerce(value, arg, path)
                except ConfigError as exc:
                    errors.append(exc)
            raise errors[0] if len(errors) == 1 else self.fail(
                path, f"expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
        if origin is Literal:
            if value not in args:
                raise self.fail(path, f"{value!r} is not one of {list(args)}")
            return value
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            try:
                return tp(value)
            except ValueError:
                raise self.fail(path, f"{value!r} is not one of {[m.value for m in tp]}") from None
        if origin in (list, tuple) or tp in (list, tuple):
            items = value if isinstance(value, list | tuple) else [value]
            item = args[0] if args else Any
            return [self.coerce(v, item, (*path, i)) for i, v in enumerate(items)]
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise self.fail(path, f"expected a mapping, got {value!r}")
            return dict(value)
        if dataclasses.is_dataclass(tp):
            if isinstance(value, tp):
                return value
            if not isinstance(value, dict):
                raise self.fail(path, f"expected a mapping, got {value!r}")
            return self.build(tp, value, path)
        if tp is bool:
            if isinstance(value, bool):
                return value
            raise self.fail(path, f"expected true or false, got {value!r}")
        if isinstance(value, bool):
            raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")
        if tp is float:
            if isinstance(value, int | float):
                return float(value)
            if isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
                return float(value)
        if tp is int and isinstance(value, int):
            return value
        if tp is str and isinstance(value, str | int | float):
            return str(value)
        if isinstance(tp, type) and tp not in (int, float, str) and isinstance(value, tp):
            return value
        raise self.fail(path, f"expected {_type_name(tp)}, got {value!r}")

    def split(self, classes: tuple[type, ...], data: dict, path: KeyPath) -> list[dict]:
        """`data`'s keys shared out to `classes` (the first that has a field takes it)."""
        hints = [_hints(c) for c in classes]
        shares: list[dict] = [{} for _ in classes]
        for key, value in data.items():
            owner = next((i for i, h in enumerate(hints) if key in h), None)
            if owner is None:
                known = [name for h in hints for name in h]
                raise ConfigError(unknown_key(locate(self.where, (*path, key), self.source), (*path, key), known))
            shares[owner][key] = self.coerce(value, hints[owner][key], (*path, key))
        return shares

    def build(self, cls: type[T], data: dict, path: KeyPath = ()) -> T:
        [kwargs] = self.split((cls,), data, path)
        try:
            return cls(**kwargs)
        except TypeError as exc:  # a required field is missing
            raise ConfigError(f"{locate(self.where, path, self.source)}: "
                              f"{dotted(path) + ': ' if path else ''}{exc}") from None


def build(cls: type[T], data: dict, source: str = "config", where: Where | None = None) -> T:
    """A `cls` from plain data; unknown keys and values of the wrong type raise ConfigError."""
    return _Builder(where or {}, source).build(cls, data)


def build_all(classes: tuple[type, ...], data: dict, source: str = "config",
              where: Where | None = None) -> tuple:
    """Several dataclasses from one mapping (TRL's way: run arguments + trainer config in one file)."""
    builder = _Builder(where or {}, source)
    shares = builder.split(classes, data, ())
    out = []
    for cls, kwargs in zip(classes, shares, strict=True):
        try:
            out.append(cls(**kwargs))
        except (TypeError, ValueError) as exc:  # a missing required field; TRL's own value checks
            raise ConfigError(f"{source}: {exc}") from None
    return tuple(out)


def load(classes: type | tuple[type, ...], path: str | Path | None, overrides: Iterable[str] = ()) -> Any:
    """`classes` (one dataclass, or a tuple of them sharing the file) from a YAML file + overrides."""
    data, where = read_yaml(path) if path else ({}, {})
    many = isinstance(classes, tuple)
    data = apply_overrides(data, overrides, where, classes)
    source = str(path) if path else "command line"
    return build_all(classes, data, source, where) if many else build(classes, data, source, where)


def to_dict(obj: Any) -> Any:
    """Dataclasses (also inside lists and dicts) as plain data, e.g. to save a resolved config."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, list | tuple):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# --- the command line -------------------------------------------------------------------------
def _help_lines(cls: type, prefix: str = "") -> list[str]:
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out += _help_lines(tp, prefix + f.name + ".")
            continue
        default = (f.default if f.default is not dataclasses.MISSING else f.default_factory()
                   if f.default_factory is not dataclasses.MISSING else "(required)")
        text = " ".join(str(f.metadata.get("help", "")).split())
        out.append(f"  {prefix}{f.name} = {default!r}\n      {text}")
    return out


def parse_cli(classes: type | tuple[type, ...], argv: list[str] | None, description: str) -> Any:
    """`prog [--config FILE] [key=value ...]`: YAML first, then overrides, then the type check.
    Errors exit with status 2 and one line `error: <where>: ...`."""
    many = classes if isinstance(classes, tuple) else (classes,)
    epilog = "config fields (set in the YAML file or as key=value):\n" + "\n".join(
        line for cls in many for line in _help_lines(cls))
    ap = argparse.ArgumentParser(description=description, epilog=epilog,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, help="YAML file with any of the fields below")
    ap.add_argument("overrides", nargs="*", metavar="key=value",
                    help="set a field: dotted keys, list indices, YAML values, e.g. sampling.temperature=0.7 "
                         "datasets.0.path=x")
    args = ap.parse_args(argv)
    for item in args.overrides:
        if "=" not in item:
            ap.error(f"'{item}' is not key=value (options go before the overrides: --config FILE k=v ...)")
    try:
        return load(classes, args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
