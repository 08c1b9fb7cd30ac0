"""`python -m inference.sandbox`: run trajectories' cells from JSON lines, print observations.

    echo '{"id": "a", "cells": ["x = 3", "print(x * 2)"]}' | python -m inference.sandbox --mode replay

Each input line is one trajectory, {"id": str, "cells": [str, ...]}, run in order in one fresh
session; each output line is {"id", "observation", "status"} for its last cell, plus "turns" (the
observation and status of every cell). Output lines come in input order. A malformed line gets
{"id": null, "line": n, "observation": "", "status": "error", "error": "stdin, line n: ..."}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from concurrent.futures import Future, ThreadPoolExecutor
from typing import get_args, get_origin

from tqdm import tqdm

from .config import SandboxConfig
from .pool import Sandbox


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m inference.sandbox", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(SandboxConfig)
    defaults = SandboxConfig()
    for f in dataclasses.fields(SandboxConfig):
        flags = [f"--{f.name.replace('_', '-')}"] + (["--timeout"] if f.name == "timeout_s" else [])
        tp, default = hints[f.name], getattr(defaults, f.name)
        kwargs: dict = {"dest": f.name, "default": default,
                        "help": f"{f.metadata['help']} (default: {default})"}
        if get_origin(tp) is typing.Literal:
            kwargs["choices"] = list(get_args(tp))
        elif get_origin(tp) is list:
            kwargs["nargs"] = "*"
        else:
            kwargs["type"] = tp
        ap.add_argument(*flags, **kwargs)
    return ap


def parse_line(line: str, lineno: int) -> tuple[str, list[str]]:
    """(id, cells) of one input line; ValueError names the line and the field."""
    where = f"stdin, line {lineno}"
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object")
    if not isinstance(record.get("id"), str):
        raise ValueError(f"{where}: field 'id': expected a string")
    cells = record.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        raise ValueError(f"{where}: field 'cells': expected a list of strings")
    return record["id"], cells


def run_trajectory(sandbox: Sandbox, tid: str, cells: list[str]) -> dict:
    turns = []
    with sandbox.session() as session:
        for cell in cells:
            obs = session.run(cell)
            turns.append({"observation": obs.text, "status": obs.status})
    last = turns[-1] if turns else {"observation": "", "status": "ok"}
    return {"id": tid, **last, "turns": turns}


def main(argv: list[str] | None = None) -> None:
    cfg = SandboxConfig(**vars(_parser().parse_args(argv)))
    pending: list[Future | dict] = []

    def flush(keep: int) -> None:
        """Write finished results in input order; wait while more than `keep` are pending."""
        while pending and (len(pending) > keep or not isinstance(pending[0], Future) or pending[0].done()):
            item = pending.pop(0)
            result = item.result() if isinstance(item, Future) else item
            sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
            sys.stdout.flush()

    with Sandbox(cfg) as sandbox, ThreadPoolExecutor(cfg.workers) as pool:
        for lineno, line in enumerate(tqdm(sys.stdin, desc="trajectories", unit="traj", disable=None), 1):
            if not line.strip():
                continue
            try:
                tid, cells = parse_line(line, lineno)
            except ValueError as exc:
                pending.append({"id": None, "line": lineno, "observation": "", "status": "error",
                                "error": str(exc)})
            else:
                pending.append(pool.submit(run_trajectory, sandbox, tid, cells))
            flush(keep=4 * cfg.workers)
        flush(keep=0)


if __name__ == "__main__":
    main()
