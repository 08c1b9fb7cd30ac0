"""An axolotl plugin that bounds an SFT run's checkpoints on disk.

The pipeline starts from the SFT checkpoints after given epochs (M_0 after epoch 3 and the
iteration-1 mixture's epoch-1 model, SPEC 4.4, 6), so a 4-epoch run keeps four. With optimizer
and scheduler state each is ~6x its weights (Adam's two fp32 moments and fp32 master weights for
bf16 weights), so four would hold ~400 GB for a 7B model. Only the newest needs that state (to
resume); this plugin drops it from the older ones after every save (formats/checkpoints.py).

Enabled in the shipped SFT configs with `plugins: [SFT.plugin.KeepResumeStateInNewestCheckpoint]`.
"""

from __future__ import annotations

from axolotl.integrations.base import BasePlugin
from transformers import TrainerCallback

from formats.checkpoints import prune_resume_state


class _PruneAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            prune_resume_state(args.output_dir)


class KeepResumeStateInNewestCheckpoint(BasePlugin):
    def add_callbacks_pre_trainer(self, cfg, model):
        return [_PruneAfterSave()]
