"""RAFT, the paper's rejection-sampling fine-tuning baseline (Table 1): TRL 1.16's SFTTrainer on the
chosen (correct) trajectories, observation tokens masked, the loss the reference used.

The reference ran RAFT as `loss_type: raft` of its DPO trainer (SPEC 5.3): `-pi_c`, the chosen
trajectory's log-probability summed over its model-generated tokens, averaged over the batch, with
the same masks, data and iterations as M-DPO. Its RAFT set is the chosen side of the random pairs
(`{messages: chosen}`, SPEC 4.4 step 9): one correct trajectory per prompt that has both a correct
and an incorrect one; prompts whose samples are all correct or all wrong give no row. So the rows
here are the `chosen` of `<pairs out>/dpo` (formats/preference.py); `prompt`/`completion` rows
(TRL's prompt-completion format) are accepted too.

Two things change against SFTTrainer: tokenisation writes the turn mask into `completion_mask`,
which TRL turns into labels; and the step's normaliser counts trajectories instead of tokens, so
the loss is the summed NLL per trajectory, averaged over the trajectories of the (accumulated,
all-process) batch, as the reference's per-batch mean under gradient accumulation and DDP.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer
from trl.data_utils import get_dataset_column_names
from trl.trainer.utils import global_then_local_main_first

from .trainer_inputs import chat_tokenizer, map_kwargs, masked_completion


@dataclass
class RAFTConfig(SFTConfig):
    """SFTConfig plus the paper's switches; completion-only loss, one trajectory per sequence."""

    mask_observations: bool = field(default=True, metadata={
        "help": "Train on model-generated tokens only, as M-DPO (SPEC 5.1). False trains on observation tokens too."})
    append_eos: bool = field(default=True, metadata={
        "help": "Append one trained EOS to each completion, as the reference does (SPEC 5.2), unless "
                "the chat template already closes turns with EOS."})

    def __post_init__(self):
        super().__post_init__()
        if self.completion_only_loss is False:
            raise ValueError("RAFT trains on the completion only: completion_only_loss cannot be false")
        self.completion_only_loss = True
        if self.packing or self.padding_free:
            raise ValueError("RAFT averages the summed NLL over trajectories: packing and padding_free, which "
                             "merge trajectories into one sequence, are not supported")
        if self.loss_type != "nll":
            raise ValueError(f"RAFT's loss is the NLL (SPEC 5.3), got loss_type={self.loss_type!r}")


def tokenize_trajectory(row: dict, index: int, tokenizer: PreTrainedTokenizerBase, dataset_name: str,
                        mask_observations: bool, append_eos: bool) -> dict[str, list[int]]:
    completion = row["chosen"] if "chosen" in row else row["completion"]
    done = masked_completion(tokenizer, row["prompt"], completion, f"{dataset_name} dataset, row {index}",
                             mask_observations=mask_observations, append_eos=append_eos)
    return {"input_ids": done.prompt_ids + done.completion_ids,
            "completion_mask": [0] * len(done.prompt_ids) + done.completion_mask}


class RAFTTrainer(SFTTrainer):
    """SFTTrainer whose loss is the reference's `raft`: summed masked NLL per trajectory, mean over trajectories.

    Takes pairs {prompt, chosen, rejected} (only `chosen` is trained) or {prompt, completion} rows."""

    loss_is_scaled_for_ga = True  # the normaliser covers the whole accumulated batch (see _get_num_items_in_batch)

    def __init__(self, model: str | PreTrainedModel, args: RAFTConfig | None = None,
                 train_dataset: Dataset | IterableDataset | None = None, eval_dataset: Any = None,
                 processing_class: PreTrainedTokenizerBase | None = None, **kwargs: Any):
        if not isinstance(args, RAFTConfig):
            raise TypeError(f"args must be a RAFTConfig, got {type(args).__name__}")
        super().__init__(model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=chat_tokenizer(processing_class, model), **kwargs)

    def _prepare_dataset(self, dataset: Dataset | IterableDataset, processing_class: PreTrainedTokenizerBase,
                         args: RAFTConfig, packing: bool, formatting_func: Any,
                         dataset_name: str) -> Dataset | IterableDataset:
        columns = get_dataset_column_names(dataset)
        if "input_ids" not in columns:
            with global_then_local_main_first():
                dataset = dataset.map(
                    tokenize_trajectory, with_indices=True, remove_columns=columns,
                    fn_kwargs={"tokenizer": processing_class, "dataset_name": dataset_name,
                               "mask_observations": args.mask_observations, "append_eos": args.append_eos},
                    **map_kwargs(dataset, args, f"Tokenizing and masking {dataset_name} trajectories"))
        # TRL's own preparation from here: labels from completion_mask, truncation, empty rows dropped.
        return super()._prepare_dataset(dataset, processing_class, args, packing, formatting_func, dataset_name)

    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor:
        """Trajectories in the optimizer step's micro-batches (all processes), where SFT counts tokens."""
        count = torch.tensor(sum(len(batch["input_ids"]) for batch in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            count = self.accelerator.gather(count).sum()
        return count

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if num_items_in_batch is None:
            # Evaluation (SFTTrainer.prediction_step counts nothing): this batch's trajectories, times the
            # process count that SFTTrainer.compute_loss multiplies the loss by, so each process reports its mean.
            processes = (self.accelerator.num_processes // self.get_tp_size()
                         if self.args.average_tokens_across_devices else 1)
            num_items_in_batch = len(inputs["input_ids"]) * processes
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)
