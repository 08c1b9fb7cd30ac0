"""M-DPO: TRL 1.16's DPOTrainer with observation tokens out of the sequence log-probabilities.

Only tokenisation and collation change: `_prepare_dataset` tokenises each pair through the chat
template and stores a per-token turn mask for chosen and rejected; the collator writes it into
`completion_mask`, which is all TRL's loss and reference code read. The loss code is TRL's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import PreTrainedTokenizerBase
from trl import DPOConfig, DPOTrainer
from trl.trainer.utils import global_then_local_main_first

from .collators import CHOSEN_MASK, REJECTED_MASK, MultiTurnPreferenceCollator
from .multiturn import MultiTurnArguments, MultiTurnTrainerMixin
from .trainer_inputs import masked_completion
from .turn_mask import ChatTemplateError

NLL_LOSS = "sft"  # TRL's token-mean NLL of the chosen completions, over the same masked tokens


@dataclass
class MultiTurnDPOConfig(MultiTurnArguments, DPOConfig):
    """DPOConfig plus the paper's switches (multiturn.py) and the NLL term. Defaults: SPEC 5.3 / 5.5."""

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


class MultiTurnDPOTrainer(MultiTurnTrainerMixin, DPOTrainer):
    """DPOTrainer whose sequence log-probabilities skip observation turns (paper §3.1, Eq. 3.3).

    Takes conversational pairs {prompt, chosen, rejected} (formats/preference.py)."""

    config_class = MultiTurnDPOConfig
    mask_columns = (CHOSEN_MASK, REJECTED_MASK)

    @staticmethod
    def make_collator(tokenizer: PreTrainedTokenizerBase, args: MultiTurnDPOConfig) -> Any:
        return MultiTurnPreferenceCollator(pad_token_id=tokenizer.pad_token_id, max_length=args.max_length,
                                           truncation_mode=args.truncation_mode,
                                           pad_to_multiple_of=args.pad_to_multiple_of)

    def _prepare_dataset(self, dataset: Dataset | IterableDataset, processing_class: PreTrainedTokenizerBase,
                         args: MultiTurnDPOConfig, dataset_name: str) -> Dataset | IterableDataset:
        if "prompt_ids" in (dataset.column_names or []):
            return dataset  # prepared already (evaluate() hands prepared sets back in)
        with global_then_local_main_first():
            dataset = self.tokenize(dataset, tokenize_pair, processing_class, args, dataset_name, "pairs")
            if args.max_length is not None and args.truncation_mode == "keep_start":  # TRL drops them only then
                dataset = self.drop_full_prompts(dataset, args)
        return dataset
