"""axolotl plugins that the shipped SFT configs enable (`plugins:` in each).

KeepResumeStateInNewestCheckpoint bounds a run's checkpoints on disk. The pipeline starts from
the SFT checkpoints after given epochs (M_0 after epoch 3 and the iteration-1 mixture's epoch-1
model, SPEC 4.4, 6), so a 4-epoch run keeps four. With optimizer and scheduler state each is ~6x
its weights (Adam's two fp32 moments and fp32 master weights for bf16 weights), so four would hold
~400 GB for a 7B model. Only the newest needs that state (to resume); this plugin drops it from the
older ones after every save (formats/checkpoints.py).

SeedStepCount makes a packed run's length repeatable. axolotl 0.19 sizes a `sample_packing` run
(its `max_steps`, so the whole cosine schedule) by packing the data in an order drawn from torch's
global generator before anything has seeded it, and torch 2.13 seeds that at random in each
process: the same tiny SFT run got 939 steps in one launch and 942 in another, and two launches
of tiny seed 1 (losses identical to step 70, then apart) ended at 0.128 and 0.070 (README). Seeding the generator from
the config's `seed` as the datasets load fixes the count; the trainer seeds itself afterwards as
before, so nothing else changes.
"""

from __future__ import annotations

import torch
from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback, TrainingArguments

from formats.checkpoints import prune_resume_state


class _PruneAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            prune_resume_state(args.output_dir)


class KeepResumeStateInNewestCheckpoint(BasePlugin):
    def add_callbacks_pre_trainer(self, cfg, model):
        return [_PruneAfterSave()]


class SeedStepCount(BasePlugin):
    def load_datasets(self, cfg, preprocess=False):
        """Called just before axolotl loads the datasets and counts the steps; loads nothing. Without
        `seed:` axolotl leaves the Trainer's default, so that one."""
        torch.manual_seed(TrainingArguments.seed if cfg.seed is None else cfg.seed)
        return None
