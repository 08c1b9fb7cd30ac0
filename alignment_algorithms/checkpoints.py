"""Checkpoints for model selection, bounded on disk.

The paper picks each iteration's model among checkpoints saved every 50 steps, evaluated on the
held-out prompts (App. B; SPEC 5.5, 7), so every checkpoint must keep its weights. Only the newest
needs what resuming needs (optimizer, scheduler, scaler and RNG state, DeepSpeed's or FSDP's
shards): for a 7B model that is about 80 GB against 17 GB of bf16 weights. transformers offers
neither split: `save_total_limit` deletes whole checkpoints, `save_only_model` keeps no optimizer
state anywhere (no resume). This callback removes the resume state of every older checkpoint
after each save.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers import TrainerCallback

from formats.checkpoints import checkpoints

# What Trainer._save_checkpoint writes besides the model (plain, DeepSpeed and FSDP runs).
RESUME_STATE = ("optimizer*", "scheduler.pt", "scaler.pt", "rng_state*.pth", "global_step*", "latest",
                "zero_to_fp32.py")


def drop_resume_state(checkpoint: Path) -> None:
    for pattern in RESUME_STATE:
        for path in checkpoint.glob(pattern):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


class ResumeStateOnlyInNewestCheckpoint(TrainerCallback):
    """After each save: weights stay in every checkpoint, resume state only in the newest."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            for _, path in checkpoints(args.output_dir)[:-1]:
                drop_resume_state(path)
