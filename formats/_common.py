"""Shared validation machinery for the file formats that stages exchange.

Stdlib only: every stage environment imports `formats`, and no stage imports another.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


class FormatError(ValueError):
    """Bad input, located: the message names the file, the line and the field."""

    def __init__(self, path: str | os.PathLike, line: int | None, field: str | None, problem: str):
        self.path, self.line, self.field, self.problem = str(path), line, field, problem
        where = self.path + (f", line {line}" if line is not None else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{problem}")


@dataclass(frozen=True)
class Field:
    """One required or optional key of a record and the JSON types it may hold."""

    name: str
    types: tuple[type, ...]
    required: bool = True


def check_fields(record: Any, fields: tuple[Field, ...], path: str, line: int | None) -> None:
    if not isinstance(record, dict):
        raise FormatError(path, line, None, f"expected a JSON object, got {type(record).__name__}")
    for f in fields:
        if f.name not in record:
            if f.required:
                raise FormatError(path, line, f.name, "missing")
            continue
        value = record[f.name]
        if value is None and not f.required:
            continue
        # bool is an int subclass in Python; keep the two apart.
        is_stray_bool = isinstance(value, bool) and bool not in f.types
        if is_stray_bool or not isinstance(value, f.types):
            names = " or ".join(t.__name__ for t in f.types)
            raise FormatError(path, line, f.name, f"expected {names}, got {type(value).__name__}")


def check_messages(messages: Any, path: str, line: int | None, field: str = "messages") -> None:
    """A chat message list: non-empty, each {role: user|assistant|system, content: str}."""
    if not isinstance(messages, list) or not messages:
        raise FormatError(path, line, field, "expected a non-empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m:
            raise FormatError(path, line, f"{field}[{i}]", "expected {role, content}")
        if m["role"] not in ("system", "user", "assistant"):
            raise FormatError(path, line, f"{field}[{i}].role", f"unknown role {m['role']!r}")
        if not isinstance(m.get("content"), str):
            raise FormatError(path, line, f"{field}[{i}].content", "expected a string")


def iter_jsonl(path: str | os.PathLike, skip_bad_lines: bool = False,
               bad_lines: list[int] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, object); a truncated last line (an interrupted writer) is an error
    unless `skip_bad_lines`, in which case its number is appended to `bad_lines`."""
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                if skip_bad_lines:
                    if bad_lines is not None:
                        bad_lines.append(lineno)
                    continue
                raise FormatError(path, lineno, None, f"not valid JSON ({exc.msg}); "
                                  "pass --skip-bad-lines to go on") from None
            yield lineno, obj


def check_version(record: dict, expected: int, path: str, line: int | None) -> None:
    if record["format_version"] != expected:
        raise FormatError(path, line, "format_version",
                          f"file has version {record['format_version']}, reader expects {expected}")


def read_validated(path: str | os.PathLike, validate: Callable[[dict, str, int], dict], skip_bad_lines: bool = False,
                   bad_lines: list[int] | None = None) -> Iterator[dict]:
    """Yield validated records; bad lines raise FormatError unless skipped (and counted)."""
    for lineno, obj in iter_jsonl(path, skip_bad_lines, bad_lines):
        try:
            yield validate(obj, str(path), lineno)
        except FormatError:
            if not skip_bad_lines:
                raise
            if bad_lines is not None:
                bad_lines.append(lineno)


def append_jsonl(fh, record: dict) -> None:
    """Write one record and make it durable before returning: the resume logic trusts it."""
    fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    fh.flush()
    os.fsync(fh.fileno())
