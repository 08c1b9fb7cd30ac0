"""Read the preference stage's datasets (formats/preference.py) and hold out prompts for evaluation.

The reference evaluated on the first 100 rows of the training data (SPEC §8 item 36); here whole
prompts (all rows sharing an `idx`) go to a held-out split, chosen by a seeded hash so the split is
the same on every rank and on every re-run of an interrupted job.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk

from formats.preference import validate_pair, validate_unpaired

VALIDATORS = {"pairs": validate_pair, "unpaired": validate_unpaired}


def load_preference_dataset(path: str | Path, kind: str) -> Dataset:
    """Load a `save_to_disk` dataset and validate every row; errors name the directory, row and field."""
    if kind not in VALIDATORS:
        raise ValueError(f"kind must be one of {sorted(VALIDATORS)}, got {kind!r}")
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such dataset directory (written by the preference stage)")
    dataset = load_from_disk(str(path))
    if isinstance(dataset, DatasetDict):
        raise ValueError(f"{path}: expected one dataset, found splits {list(dataset)}")
    if len(dataset) == 0:
        raise ValueError(f"{path}: the dataset is empty")
    validate = VALIDATORS[kind]
    for index, row in enumerate(dataset):
        validate(row, str(path), index)
    return dataset


def _rank(idx: str, seed: int) -> str:
    return hashlib.sha256(f"{seed}:{idx}".encode()).hexdigest()


def split_heldout_prompts(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Split by prompt (`idx`): about `fraction` of the prompts, at least one, go to evaluation."""
    if not 0 < fraction < 1:
        raise ValueError(f"eval fraction must lie in (0, 1), got {fraction}")
    prompts = sorted(set(dataset["idx"]), key=lambda idx: _rank(idx, seed))
    if len(prompts) < 2:
        raise ValueError("cannot hold out prompts for evaluation: the dataset has fewer than 2 prompts")
    heldout = set(prompts[: max(1, math.floor(fraction * len(prompts)))])
    is_eval = [idx in heldout for idx in dataset["idx"]]
    train = dataset.select([i for i, e in enumerate(is_eval) if not e])
    evaluation = dataset.select([i for i, e in enumerate(is_eval) if e])
    return train, evaluation
