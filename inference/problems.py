"""The problems to solve: GSM8K, MATH, or a prompt set, from local JSONL or the Hugging Face Hub.

Rows are read as the reference reads them (SPEC 3.3, through `inference.grading.extract`):
GSM8K rows carry `question` and `answer` ("... #### N"), MATH rows `problem` and `solution`, and
the paper's prompt sets (RLHF4MATH/prompt_iter1..3) a question with `gt` and `gt_cot` already
filled in. Hub rows get their keys lower-cased, as the reference's loader does. A row's `idx`
is its own `idx` field when it has one, else its position in the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from formats import FormatError, heldout
from inference.grading.extract import parse_ground_truth, parse_question

# Columns kept in a record's `extra` (the reference copies these into its output, SPEC 1.5).
EXTRA_KEYS = ("level", "type", "unit", "solution_type", "choices", "ques_type",
              "ans_type", "answer_type", "dataset", "subfield", "filed", "theorem")
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class DataError(ValueError):
    pass


@dataclass
class DataConfig:
    path: str = field(default="", metadata={
        "help": "a local .jsonl file, or a Hub data set id (e.g. openai/gsm8k, RLHF4MATH/prompt_iter1)"})
    name: str = field(default="gsm8k", metadata={
        "help": "how rows are read: gsm8k, math, or any other name for rows that carry gt/gt_cot"})
    split: str = field(default="test", metadata={"help": "Hub split (local files are one split)"})
    hub_config: str | None = field(default=None, metadata={"help": "Hub data set config (e.g. main)"})
    start: int = field(default=0, metadata={"help": "first row (0-based, as the reference's --start)"})
    end: int = field(default=-1, metadata={"help": "row after the last; -1: to the end"})
    share: str = field(default="", metadata={
        "help": "k/N: the k-th of N equal, disjoint shares of the rows after start/end (the rest of the division "
                "left out), e.g. 2/3 for the second of three iterations' prompt sets; '': all"})
    limit: int = field(default=-1, metadata={"help": "at most this many rows after start/end/share; -1: all"})
    idx_file: str | None = field(default=None, metadata={
        "help": "keep only the rows (after start/end/limit) whose idx a training run held out for model "
                "selection: its heldout_prompts.json (formats/heldout.py)"})


@dataclass(frozen=True)
class Problem:
    idx: str
    question: str
    gt: str
    gt_cot: str
    extra: dict


def _read_jsonl(path: Path) -> list[tuple[str, dict]]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}, line {lineno}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}, line {lineno}: expected a JSON object")
            rows.append((f"{path}, line {lineno}", row))
    return rows


def _read_hub(cfg: DataConfig) -> list[tuple[str, dict]]:
    import datasets

    try:
        ds = datasets.load_dataset(cfg.path, cfg.hub_config, split=cfg.split)
    except Exception as exc:  # the datasets library raises many types for "not there"
        raise DataError(f"cannot load {cfg.path!r} (split {cfg.split!r}) from the Hugging Face Hub: "
                        f"{type(exc).__name__}: {exc}") from None
    where = f"{cfg.path} ({cfg.split})"
    return [(f"{where}, row {i}", {k.lower(): v for k, v in row.items()}) for i, row in enumerate(ds, start=1)]


def read_rows(cfg: DataConfig) -> list[tuple[str, dict]]:
    """All rows of the data set, each with where it came from (file and line, or Hub row)."""
    path = Path(cfg.path)
    if path.is_file():
        return _read_jsonl(path)
    if not cfg.path:
        raise DataError("data.path is empty: give a .jsonl file or a Hub data set id")
    if path.suffix in (".jsonl", ".json") or not _HUB_ID.match(cfg.path):
        raise DataError(f"data.path {cfg.path!r}: no such file, and not a Hub data set id (owner/name)")
    return _read_hub(cfg)


def _share(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise DataError(f"data.share {text!r}: expected k/N with 1 <= k <= N, e.g. 2/3")
    return int(match[1]), int(match[2])


def load_problems(cfg: DataConfig) -> list[Problem]:
    rows = read_rows(cfg)
    end = len(rows) if cfg.end < 0 else min(cfg.end, len(rows))
    picked = list(enumerate(rows))[cfg.start:end]
    if cfg.share:
        k, n = _share(cfg.share)
        size = len(picked) // n
        picked = picked[size * (k - 1):size * k]
    if cfg.limit >= 0:
        picked = picked[:cfg.limit]
    if cfg.idx_file:
        try:
            keep = set(heldout.read(cfg.idx_file)["idx"])
        except (OSError, FormatError) as exc:
            raise DataError(f"data.idx_file: {exc}") from None
        picked = [(pos, (where, row)) for pos, (where, row) in picked if str(row.get("idx", pos)) in keep]
        if len(picked) != len(keep):
            raise DataError(f"data.idx_file {cfg.idx_file}: {len(keep) - len(picked)} of its {len(keep)} "
                            f"prompts are not among the selected rows of {cfg.path}")
    problems, seen = [], set()
    for pos, (where, row) in picked:
        idx = str(row.get("idx", pos))
        try:
            question = parse_question(row, cfg.name)
            gt_cot, gt = parse_ground_truth(row, cfg.name)
        except (ValueError, NotImplementedError) as exc:
            raise DataError(f"{where}: {exc}") from None
        if idx in seen:
            raise DataError(f"{where}: idx {idx!r} appears twice; ids must be unique")
        seen.add(idx)
        extra = {k: row[k] for k in EXTRA_KEYS if k in row and isinstance(row[k], str | int | float)}
        problems.append(Problem(idx, question, gt, gt_cot, extra))
    return problems
