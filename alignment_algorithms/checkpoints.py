"""Checkpoints for model selection, bounded on disk.

The paper picks each iteration's model among checkpoints saved every 50 steps, evaluated on the
held-out prompts (App. B; SPEC 5.5, 7), so every checkpoint must keep its weights. Only the newest
needs what resuming needs (optimizer, scheduler, scaler and RNG state, DeepSpeed's or FSDP's
shards): for a 7B model that is about 80 GB against 17 GB of bf16 weights. transformers offers
neither split: `save_total_limit` deletes whole checkpoints, `save_only_model` keeps no optimizer
state anywhere (no resume). This callback removes the resume state of every older checkpoint
after each save (formats/checkpoints.py; SFT/plugin.py does the same for axolotl).
"""

from __future__ import annotations

from transformers import TrainerCallback

from formats.checkpoints import prune_resume_state


class ResumeStateOnlyInNewestCheckpoint(TrainerCallback):
    """After each save: weights stay in every checkpoint, resume state only in the newest."""

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            prune_resume_state(args.output_dir)
