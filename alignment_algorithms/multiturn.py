"""What M-DPO and M-KTO add to their TRL trainers alike: the paper's two switches, the chat
tokenizer, a reference model given by path, the collator that carries the turn masks, and the
mask columns kept through TRL's column pruning. Each trainer then overrides `_prepare_dataset`
(how its rows are tokenised) and names its collator; the loss code stays TRL's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset, IterableDataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .trainer_inputs import chat_tokenizer, map_kwargs, reference_model


@dataclass
class MultiTurnArguments:
    """The paper's switches, mixed into each trainer's TRL config (SPEC 5.1-5.4)."""

    mask_observations: bool = field(default=True, metadata={
        "help": "Sum log-probabilities over model-generated tokens only (M-DPO, M-KTO). False trains on "
                "observation tokens too: the single-turn DPO / KTO baselines of the paper's Table 1."})
    append_eos: bool = field(default=True, metadata={
        "help": "Append one trained EOS to each completion, as the reference does (SPEC 5.2, 5.4), unless "
                "the chat template already closes turns with EOS."})


class MultiTurnTrainerMixin:
    """Put before TRL's trainer class: `class MultiTurnDPOTrainer(MultiTurnTrainerMixin, DPOTrainer)`.

    `ref_model` may be a path, loaded like the policy; None is TRL's frozen copy of the initial policy."""

    config_class: type
    mask_columns: tuple[str, ...]  # the collator's inputs that TRL would otherwise prune

    def __init__(self, model: str | PreTrainedModel, ref_model: str | PreTrainedModel | None = None,
                 args: Any = None, data_collator: Any = None,
                 train_dataset: Dataset | IterableDataset | None = None, eval_dataset: Any = None,
                 processing_class: PreTrainedTokenizerBase | None = None, **kwargs: Any):
        if not isinstance(args, self.config_class):
            raise TypeError(f"args must be a {self.config_class.__name__}, got {type(args).__name__}")
        processing_class = chat_tokenizer(processing_class, model)
        super().__init__(model, ref_model=reference_model(ref_model, args), args=args,
                         data_collator=self.make_collator(processing_class, args) if data_collator is None
                         else data_collator,
                         train_dataset=train_dataset, eval_dataset=eval_dataset,
                         processing_class=processing_class, **kwargs)

    @staticmethod
    def make_collator(tokenizer: PreTrainedTokenizerBase, args: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def tokenize(dataset: Dataset | IterableDataset, fn: Callable, tokenizer: PreTrainedTokenizerBase,
                 args: Any, dataset_name: str, what: str) -> Dataset | IterableDataset:
        """`fn(row, index, tokenizer, dataset_name, mask_observations, append_eos)` over every row."""
        return dataset.map(
            fn, with_indices=True,
            fn_kwargs={"tokenizer": tokenizer, "dataset_name": dataset_name,
                       "mask_observations": args.mask_observations, "append_eos": args.append_eos},
            **map_kwargs(dataset, args, f"Tokenizing and masking {dataset_name} {what}"))

    @staticmethod
    def drop_full_prompts(dataset: Dataset | IterableDataset, args: Any) -> Dataset | IterableDataset:
        """As TRL: a prompt that fills max_length leaves nothing to train on."""
        return dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length,
                              **map_kwargs(dataset, args, "Dropping prompts over max_length"))

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        self._signature_columns += [c for c in self.mask_columns if c not in self._signature_columns]
