"""M-KTO: TRL 1.16's KTOTrainer with observation tokens out of the sequence log-probabilities.

As for M-DPO, only tokenisation and collation change. The KL term's mismatched pairs (each prompt
with the previous completion of its batch) carry that completion's own turn mask, rotated with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase
from trl import KTOConfig, KTOTrainer
from trl.data_utils import unpair_preference_dataset
from trl.trainer.utils import global_then_local_main_first

from .collators import COMPLETION_MASK, KL_COMPLETION_MASK, MultiTurnUnpairedCollator
from .multiturn import MultiTurnArguments, MultiTurnTrainerMixin
from .trainer_inputs import map_kwargs, masked_completion


@dataclass
class MultiTurnKTOConfig(MultiTurnArguments, KTOConfig):
    """KTOConfig plus the paper's switches (multiturn.py; SPEC 5.4)."""


def tokenize_unpaired(row: dict, index: int, tokenizer: PreTrainedTokenizerBase, dataset_name: str,
                      mask_observations: bool, append_eos: bool) -> dict[str, list[int]]:
    where = f"{dataset_name} dataset, row {index}"
    done = masked_completion(tokenizer, row["prompt"], row["completion"], where,
                             mask_observations=mask_observations, append_eos=append_eos)
    return {"prompt_ids": done.prompt_ids, "completion_ids": done.completion_ids,
            COMPLETION_MASK: done.completion_mask}


def rotate_kl_completions(batch: dict[str, list]) -> dict[str, list]:
    """TRL's KL pairs, (x_1, y_n), (x_2, y_1), ..., (x_n, y_{n-1}), each y with its own mask."""
    return {"KL_completion_ids": batch["completion_ids"][-1:] + batch["completion_ids"][:-1],
            KL_COMPLETION_MASK: batch[COMPLETION_MASK][-1:] + batch[COMPLETION_MASK][:-1]}


class MultiTurnKTOTrainer(MultiTurnTrainerMixin, KTOTrainer):
    """KTOTrainer whose sequence log-probabilities skip observation turns (paper §3.1).

    Takes unpaired conversational rows {prompt, completion, label} or pairs, which it unpairs as TRL does."""

    config_class = MultiTurnKTOConfig
    mask_columns = (COMPLETION_MASK, KL_COMPLETION_MASK)

    @staticmethod
    def make_collator(tokenizer: PreTrainedTokenizerBase, args: MultiTurnKTOConfig) -> Any:
        return MultiTurnUnpairedCollator(pad_token_id=tokenizer.pad_token_id, max_length=args.max_length,
                                         pad_to_multiple_of=args.pad_to_multiple_of)

    def _prepare_dataset(self, dataset: Dataset | IterableDataset, processing_class: PreTrainedTokenizerBase,
                         args: MultiTurnKTOConfig, dataset_name: str) -> Dataset | IterableDataset:
        columns = dataset.column_names or list(next(iter(dataset)))
        if "prompt_ids" in columns:
            return dataset  # prepared already (evaluate() hands prepared sets back in)
        with global_then_local_main_first():
            if "chosen" in columns and "rejected" in columns:
                dataset = unpair_preference_dataset(dataset, **map_kwargs(dataset, args, "Unpairing"))
            dataset = self.tokenize(dataset, tokenize_unpaired, processing_class, args, dataset_name, "completions")
            if args.max_length is not None:
                dataset = self.drop_full_prompts(dataset, args)
            if self.calculate_KL:
                # One process, so the rotation blocks line up with the sequential per-device batches.
                dataset = dataset.map(rotate_kl_completions, batched=True,
                                      batch_size=args.per_device_train_batch_size)
        return dataset
