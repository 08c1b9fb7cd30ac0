"""M-DPO: TRL 1.16's DPOTrainer with observation tokens out of the sequence log-probabilities.

Only tokenisation and collation change: `_prepare_dataset` tokenises each pair through the chat
template and stores a per-token turn mask for chosen and rejected; the collator writes it into
`completion_mask`, which is all TRL's loss and reference code read. The loss code is TRL's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer
from trl.trainer.utils import global_then_local_main_first

from .collators import CHOSEN_MASK, REJECTED_MASK, MultiTurnPreferenceCollator
from .trainer_inputs import chat_tokenizer, map_kwargs, masked_completion, reference_model
from .turn_mask import ChatTemplateError

NLL_LOSS = "sft"  # TRL's token-mean NLL of the chosen completions, over the same masked tokens


@dataclass
class MultiTurnDPOConfig(DPOConfig):
    """DPOConfig plus the paper's switches. Defaults: SPEC 5.3 / 5.5."""

    mask_observations: bool = field(default=True, metadata={
        "help": "Sum log-probabilities over model-generated tokens only (M-DPO). False trains on observation "
                "tokens too: the single-turn DPO baseline of the paper's Table 1."})
    append_eos: bool = field(default=True, metadata={
        "help": "Append one trained EOS to each completion, as the reference does (SPEC 5.2), unless "
                "the chat template already closes turns with EOS."})
    nll_coefficient: float = field(default=0.0, metadata={
        "help": "Weight of an NLL term on the chosen completions (the paper's NLL ablation; reference "
                "default 0). Implemented as TRL's 'sft' loss added to loss_type."})

    def __post_init__(self):
        super().__post_init__()
        if self.nll_coefficient < 0:
            raise ValueError(f"nll_coefficient must be >= 0, got {self.nll_coefficient}")
        if self.nll_coefficient == 0:
            return
        weights = list(self.loss_weights or [1.0] * len(self.loss_type))
        if NLL_LOSS in self.loss_type:  # set already (a second __post_init__), or by hand
            if weights[self.loss_type.index(NLL_LOSS)] != self.nll_coefficient:
                raise ValueError("give the NLL weight either as nll_coefficient or as loss_type 'sft' with "
                                 "its loss_weights entry, not both")
            return
        self.loss_type = [*self.loss_type, NLL_LOSS]
        self.loss_weights = [*weights, self.nll_coefficient]


def tokenize_pair(row: dict, index: int, tokenizer: PreTrainedTokenizerBase, dataset_name: str,
                  mask_observations: bool, append_eos: bool) -> dict[str, list[int]]:
    where = f"{dataset_name} dataset, row {index}"
    flags = {"mask_observations": mask_observations, "append_eos": append_eos}
    chosen = masked_completion(tokenizer, row["prompt"], row["chosen"], f"{where}, chosen", **flags)
    rejected = masked_completion(tokenizer, row["prompt"], row["rejected"], f"{where}, rejected", **flags)
    if chosen.prompt_ids != rejected.prompt_ids:
        raise ChatTemplateError(f"{where}: the prompt tokenises differently before chosen and rejected")
    return {"prompt_ids": chosen.prompt_ids,
            "chosen_ids": chosen.completion_ids, CHOSEN_MASK: chosen.completion_mask,
            "rejected_ids": rejected.completion_ids, REJECTED_MASK: rejected.completion_mask}


class MultiTurnDPOTrainer(DPOTrainer):
    """DPOTrainer whose sequence log-probabilities skip observation turns (paper §3.1, Eq. 3.3).

    Takes conversational pairs {prompt, chosen, rejected} (formats/preference.py). `ref_model` may also
    be a path, loaded like the policy; None is a frozen copy of the initial policy."""

    def __init__(self, model: str | PreTrainedModel, ref_model: str | PreTrainedModel | None = None,
                 args: MultiTurnDPOConfig | None = None, data_collator: Any = None,
                 train_dataset: Dataset | IterableDataset | None = None, eval_dataset: Any = None,
                 processing_class: PreTrainedTokenizerBase | None = None, **kwargs: Any):
        if not isinstance(args, MultiTurnDPOConfig):
            raise TypeError(f"args must be a MultiTurnDPOConfig, got {type(args).__name__}")
        processing_class = chat_tokenizer(processing_class, model)
        if data_collator is None:
            data_collator = MultiTurnPreferenceCollator(
                pad_token_id=processing_class.pad_token_id, max_length=args.max_length,
                truncation_mode=args.truncation_mode, pad_to_multiple_of=args.pad_to_multiple_of)
        super().__init__(model, ref_model=reference_model(ref_model, args), args=args,
                         data_collator=data_collator, train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)

    def _prepare_dataset(self, dataset: Dataset | IterableDataset, processing_class: PreTrainedTokenizerBase,
                         args: MultiTurnDPOConfig, dataset_name: str) -> Dataset | IterableDataset:
        if "prompt_ids" in (dataset.column_names or []):
            return dataset  # prepared already (evaluate() hands prepared sets back in)
        with global_then_local_main_first():
            dataset = dataset.map(
                tokenize_pair, with_indices=True,
                fn_kwargs={"tokenizer": processing_class, "dataset_name": dataset_name,
                           "mask_observations": args.mask_observations, "append_eos": args.append_eos},
                **map_kwargs(dataset, args, f"Tokenizing and masking {dataset_name} pairs"))
            # As TRL: a prompt that fills max_length leaves keep_start truncation nothing to train on.
            if args.max_length is not None and args.truncation_mode == "keep_start":
                dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length,
                                         **map_kwargs(dataset, args, "Dropping prompts over max_length"))
        return dataset

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in (CHOSEN_MASK, REJECTED_MASK)
                                    if c not in self._signature_columns]
