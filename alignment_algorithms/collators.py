"""TRL's preference collators, with the per-token turn masks written into `completion_mask`.

TRL 1.16 builds `completion_mask` as 1 on every completion token, and its loss and reference code
read nothing else (`labels = input_ids.masked_fill(completion_mask == 0, -100)`). These subclasses
let TRL pad and truncate as usual, then replace that mask row by row with the dataset's masks,
truncated the same way, so observation tokens drop out of every log-probability sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference

# Dataset columns holding the masks: one 0/1 per completion token, aligned with `<name>_ids`.
CHOSEN_MASK, REJECTED_MASK = "chosen_loss_mask", "rejected_loss_mask"
COMPLETION_MASK, KL_COMPLETION_MASK = "completion_loss_mask", "KL_completion_loss_mask"


def _keep(max_length: int | None, truncation_mode: str = "keep_start") -> slice:
    if max_length is None:
        return slice(None)
    return slice(-max_length, None) if truncation_mode == "keep_end" else slice(None, max_length)


def _masks_tensor(rows: list[list[int]], keep: slice, attention_mask: torch.Tensor) -> torch.Tensor:
    """Truncate each row like the collator truncated the ids, then right-pad to the batch width."""
    out = torch.zeros_like(attention_mask)
    for i, row in enumerate(rows):
        row = row[keep]
        if len(row) != int(attention_mask[i].sum()):
            raise ValueError(f"turn mask of sequence {i} has {len(row)} entries for "
                             f"{int(attention_mask[i].sum())} tokens: masks and token ids are misaligned")
        out[i, : len(row)] = torch.tensor(row, dtype=out.dtype)
    return out


@dataclass
class MultiTurnPreferenceCollator(DataCollatorForPreference):
    """`DataCollatorForPreference` whose `completion_mask` is 0 on the prompt and on observation turns."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        rows = ([[0] * len(e["prompt_ids"]) + e[CHOSEN_MASK] for e in examples]
                + [[0] * len(e["prompt_ids"]) + e[REJECTED_MASK] for e in examples])
        keep = _keep(self.max_length, self.truncation_mode)
        batch["completion_mask"] = _masks_tensor(rows, keep, batch["attention_mask"])
        return batch


@dataclass
class MultiTurnUnpairedCollator(DataCollatorForUnpairedPreference):
    """`DataCollatorForUnpairedPreference` with turn masks on the completions and on the KL completions."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        for prefix, column in (("", COMPLETION_MASK), ("KL_", KL_COMPLETION_MASK)):
            if f"{prefix}completion_mask" not in batch:
                continue
            rows = [[0] * len(e["prompt_ids"]) + e[column] for e in examples]
            keep = _keep(self.max_length)
            batch[f"{prefix}completion_mask"] = _masks_tensor(rows, keep, batch[f"{prefix}attention_mask"])
        return batch
