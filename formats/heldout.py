"""Held-out prompts: the prompts a training run kept out of its training data for model selection
(paper App. B: "We evaluate the model every 50 training steps by the split prompt set").

Written by `alignment_algorithms` as `<output_dir>/heldout_prompts.json`, read by `inference`
(`data.idx_file`) to evaluate each checkpoint on exactly these prompts. One JSON object:
- idx (list of str): the held-out prompts' ids, as in the preference data and the prompt file
- fraction (float), seed (int): how the split was drawn
- format_version (int)
"""

from __future__ import annotations

import json
import os

from ._common import Field, FormatError, check_fields, check_version

FORMAT_VERSION = 1
FILE_NAME = "heldout_prompts.json"
FIELDS = (Field("idx", (list,)), Field("fraction", (float, int)), Field("seed", (int,)),
          Field("format_version", (int,)))


def validate(record: dict, path: str) -> dict:
    check_fields(record, FIELDS, path, None)
    if not record["idx"] or not all(isinstance(i, str) for i in record["idx"]):
        raise FormatError(path, None, "idx", "expected a non-empty list of strings")
    check_version(record, FORMAT_VERSION, path, None)
    return record


def write(path: str | os.PathLike, idx: list[str], fraction: float, seed: int) -> None:
    record = {"idx": sorted(idx), "fraction": fraction, "seed": seed, "format_version": FORMAT_VERSION}
    validate(record, str(path))
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")


def read(path: str | os.PathLike) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
    except json.JSONDecodeError as exc:
        raise FormatError(path, None, None, f"not valid JSON ({exc.msg})") from None
    return validate(record, str(path))
