"""What both multi-turn trainers resolve before TRL's constructor runs: the tokenizer, the
reference model and the dataset rows."""

from __future__ import annotations

from typing import Any

from datasets import Dataset
from jinja2 import TemplateError
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from trl.trainer.utils import create_model_from_path, get_config_model_id

from .turn_mask import ChatTemplateError, MaskedCompletion, tokenize_with_turn_mask


def chat_tokenizer(processing_class: Any, model: str | PreTrainedModel) -> PreTrainedTokenizerBase:
    """The text tokenizer with a chat template (the masks come from it), with a pad token."""
    if processing_class is None:
        processing_class = AutoTokenizer.from_pretrained(model if isinstance(model, str)
                                                         else get_config_model_id(model.config))
    if not isinstance(processing_class, PreTrainedTokenizerBase) or not processing_class.is_fast:
        raise TypeError("the multi-turn trainers need a fast text tokenizer (offsets locate the turns), "
                        f"got {type(processing_class).__name__}")
    if not processing_class.chat_template:
        raise ValueError("the tokenizer has no chat template: the turn masks are read off it")
    if processing_class.pad_token is None:
        processing_class.pad_token = processing_class.eos_token
    return processing_class


def reference_model(ref_model: str | PreTrainedModel | None, args: Any) -> PreTrainedModel | None:
    """Load a reference given by path exactly like TRL loads the policy (same dtype: SPEC §8 item 35).

    None keeps TRL's default, a frozen copy of the initial policy: in the iterative loop that is the
    previous iteration's model, the paper's choice (§3.2); a path to the SFT model gives the
    fixed-reference ablation."""
    if not isinstance(ref_model, str):
        return ref_model
    kwargs = dict(args.model_init_kwargs or {})
    kwargs.setdefault("trust_remote_code", args.trust_remote_code)
    if args.distributed_state.distributed_type in ("MULTI_GPU", "DEEPSPEED"):
        kwargs["device_map"] = None  # as TRL does for the policy: "auto" fails under distributed training
    return create_model_from_path(ref_model, **kwargs)


def masked_completion(tokenizer: PreTrainedTokenizerBase, prompt: list, completion: list, where: str,
                      mask_observations: bool, append_eos: bool) -> MaskedCompletion:
    """`tokenize_with_turn_mask`, with errors naming the dataset row."""
    if not isinstance(prompt, list) or not isinstance(completion, list):
        raise ValueError(f"{where}: expected conversational rows (lists of {{role, content}} messages)")
    try:
        return tokenize_with_turn_mask(tokenizer, prompt, completion, mask_observations, append_eos)
    except (ChatTemplateError, TemplateError) as exc:
        raise ChatTemplateError(f"{where}: {exc}") from exc


def map_kwargs(dataset: Any, args: Any, desc: str) -> dict[str, Any]:
    """`Dataset.map` options; an IterableDataset takes neither processes nor a description."""
    return {"num_proc": args.dataset_num_proc, "desc": desc} if isinstance(dataset, Dataset) else {}
