"""A training run's output folder, as the pipeline reads it for model selection.

`<output_dir>/checkpoint-<step>/` holds the weights saved at that step (transformers' Trainer
layout); `prune_resume_state`, run after each save by the alignment trainers and the SFT plugin,
keeps weights in every checkpoint and resume state only in the newest; `<output_dir>/` itself
holds the final model; `heldout_prompts.json` (formats/heldout.py) the prompts the run kept out
of training.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PREFIX = "checkpoint"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR
# What Trainer._save_checkpoint writes besides the model (plain, DeepSpeed and FSDP runs).
RESUME_STATE = ("optimizer*", "scheduler.pt", "scaler.pt", "rng_state*.pth", "global_step*", "latest",
                "zero_to_fp32.py")
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


def prune_resume_state(output_dir: str | os.PathLike) -> list[Path]:
    """Model selection needs every checkpoint's weights, resuming only the newest one's optimizer,
    scheduler and RNG state (for a 7B model ~80 GB against ~17 GB of bf16 weights): drop that
    state from every older checkpoint that holds whole weights (a ZeRO-3 checkpoint without
    gathered weights has them only in its shards, and is left alone). Returns the pruned folders."""
    pruned = []
    for _, path in checkpoints(output_dir)[:-1]:
        if not has_weights(path):
            continue
        for pattern in RESUME_STATE:
            for item in path.glob(pattern):
                shutil.rmtree(item) if item.is_dir() else item.unlink()
                pruned.append(path)
    return sorted(set(pruned))
