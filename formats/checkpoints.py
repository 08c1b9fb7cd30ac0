"""A training run's output folder, as the pipeline reads it for model selection.

`<output_dir>/checkpoint-<step>/` holds the weights saved at that step (transformers' Trainer
layout; `alignment_algorithms.checkpoints` keeps weights in every checkpoint and resume state only
in the newest); `<output_dir>/` itself holds the final model; `heldout_prompts.json`
(formats/heldout.py) the prompts the run kept out of training.
"""

from __future__ import annotations

import os
from pathlib import Path

PREFIX = "checkpoint"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR
WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def checkpoints(output_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, folder) of every `checkpoint-<step>` folder in `output_dir`, oldest first."""
    found = []
    for path in Path(output_dir).glob(f"{PREFIX}-*"):
        step = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and step.isdigit():
            found.append((int(step), path))
    return sorted(found)


def has_weights(folder: str | os.PathLike) -> bool:
    """A whole model that vLLM and transformers load (not only a LoRA adapter)."""
    return (Path(folder) / "config.json").is_file() and any((Path(folder) / w).is_file() for w in WEIGHTS)
