"""M-KTO: TRL 1.16's KTOTrainer with observation tokens out of the sequence log-probabilities.

As for M-DPO, only tokenisation and collation change. The KL term's mismatched pairs (each prompt
with the previous completion of its batch) carry that completion's own turn mask, rotated with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import KTOConfig, KTOTrainer
from trl.data_utils import unpair_preference_dataset
from trl.trainer.utils import global_then_local_main_first

from .collators import COMPLETION_MASK, KL_COMPLETION_MASK, MultiTurnUnpairedCollator
from .trainer_inputs import chat_tokenizer, map_kwargs, masked_completion, reference_model


@dataclass
class MultiTurnKTOConfig(KTOConfig):
    """KTOConfig plus the paper's switches (SPEC 5.4)."""

    mask_observations: bool = field(default=True, metadata={
        "help": "Sum log-probabilities over model-generated tokens only (M-KTO). False trains on observation "
                "tokens too: the single-turn KTO baseline of the paper's Table 1."})
    append_eos: bool = field(default=True, metadata={
        "help": "Append one trained EOS to each completion, as the reference does (SPEC 5.4), unless "
                "the chat template already closes turns with EOS."})


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


class MultiTurnKTOTrainer(KTOTrainer):
    """KTOTrainer whose sequence log-probabilities skip observation turns (paper §3.1).

    Takes unpaired conversational rows {prompt, completion, label} or pairs, which it unpairs as TRL
    does. `ref_model` may also be a path, loaded like the policy."""

    def __init__(self, model: str | PreTrainedModel, ref_model: str | PreTrainedModel | None = None,
                 args: MultiTurnKTOConfig | None = None, data_collator: Any = None,
                 train_dataset: Dataset | IterableDataset | None = None, eval_dataset: Any = None,
                 processing_class: PreTrainedTokenizerBase | None = None, **kwargs: Any):
        if not isinstance(args, MultiTurnKTOConfig):
            raise TypeError(f"args must be a MultiTurnKTOConfig, got {type(args).__name__}")
        processing_class = chat_tokenizer(processing_class, model)
        if data_collator is None:
            data_collator = MultiTurnUnpairedCollator(pad_token_id=processing_class.pad_token_id,
                                                      max_length=args.max_length,
                                                      pad_to_multiple_of=args.pad_to_multiple_of)
        super().__init__(model, ref_model=reference_model(ref_model, args), args=args,
                         data_collator=data_collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)

    def _prepare_dataset(self, dataset: Dataset | IterableDataset, processing_class: PreTrainedTokenizerBase,
                         args: MultiTurnKTOConfig, dataset_name: str) -> Dataset | IterableDataset:
        columns = dataset.column_names or list(next(iter(dataset)))
        if "prompt_ids" in columns:
            return dataset  # prepared already (evaluate() hands prepared sets back in)
        with global_then_local_main_first():
            if "chosen" in columns and "rejected" in columns:
                dataset = unpair_preference_dataset(dataset, **map_kwargs(dataset, args, "Unpairing"))
            dataset = dataset.map(
                tokenize_unpaired, with_indices=True,
                fn_kwargs={"tokenizer": processing_class, "dataset_name": dataset_name,
                           "mask_observations": args.mask_observations, "append_eos": args.append_eos},
                **map_kwargs(dataset, args, f"Tokenizing and masking {dataset_name} completions"))
            # As TRL: a prompt that fills max_length leaves nothing to train on.
            if args.max_length is not None:
                dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length,
                                         **map_kwargs(dataset, args, "Dropping prompts over max_length"))
            if self.calculate_KL:
                # One process, so the rotation blocks line up with the sequential per-device batches.
                dataset = dataset.map(rotate_kl_completions, batched=True,
                                      batch_size=args.per_device_train_batch_size)
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in (COMPLETION_MASK, KL_COMPLETION_MASK)
                                    if c not in self._signature_columns]
