"""Test data shared by the alignment tests: preference rows made from the tiny world's trajectories, a
tiny model, and tokenizers trained here for the public chat templates of the paper's model families."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch

TEMPLATES = Path(__file__).parent / "chat_templates"


def spoil(messages: list[dict]) -> list[dict]:
    """A rejected twin: every number in the code, its output and the final answer shifted by one."""
    out = []
    for m in messages:
        m = dict(m)
        if m["role"] == "assistant" or m["content"].startswith("```output"):
            m["content"] = re.sub(r"\d+", lambda n: str(int(n.group()) + 1), m["content"])
        out.append(m)
    return out


def pair_rows(trajectories: list[list[dict]]) -> list[dict]:
    return [{"prompt": t[:1], "chosen": t[1:], "rejected": spoil(t)[1:], "gt": "0", "idx": str(i)}
            for i, t in enumerate(trajectories)]


def single_turn_pair_rows(trajectories: list[list[dict]]) -> list[dict]:
    """Pairs without observation turns: the final answer alone."""
    return [{"prompt": t[:1], "chosen": t[-1:], "rejected": spoil(t)[-1:], "gt": "0", "idx": str(i)}
            for i, t in enumerate(trajectories)]


def unpaired_rows(trajectories: list[list[dict]]) -> list[dict]:
    return [{"prompt": t[:1], "completion": (t if i % 2 == 0 else spoil(t))[1:], "label": i % 2 == 0,
             "gt": "0", "idx": str(i)} for i, t in enumerate(trajectories)]


def save_tiny_model(path: Path, tokenizer, seed: int) -> Path:
    """A random Llama small enough for CPU tests (hidden 64, 2 layers), with the world's tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=2048,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@dataclass(frozen=True)
class Family:
    """A model family's chat template (public tokenizer_config.json text) and special tokens."""

    template: str
    specials: tuple[str, ...]
    bos: str | None
    eos: str
    pad: str | None
    style: str  # "gemma": SentencePiece without dummy prefix; "metaspace": with it; "bytelevel": GPT-2 style


GEMMA_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>")
FAMILIES = {
    "gemma-1.1-it": Family("gemma-1.1-it.jinja", GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>", "gemma"),
    "gemma-2-it": Family("gemma-2-it.jinja", GEMMA_SPECIALS, "<bos>", "<eos>", "<pad>", "gemma"),
    "mistral-v0.3": Family("mistral-7b-instruct-v0.3.jinja",
                           ("<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]",
                            "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]"),
                           "<s>", "</s>", None, "metaspace"),
    "llama-3": Family("llama-3-instruct.jinja",
                      ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                       "<|eot_id|>"), "<|begin_of_text|>", "<|eot_id|>", None, "bytelevel"),
    "qwen2.5": Family("qwen2.5-instruct.jinja", ("<|endoftext|>", "<|im_start|>", "<|im_end|>"),
                      None, "<|im_end|>", "<|endoftext|>", "bytelevel"),
    "deepseek": Family("deepseek-math-instruct.jinja", ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
                       "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", None, "bytelevel"),
}


def train_family_tokenizer(family: Family, corpus: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if family.style == "bytelevel":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        if family.style == "gemma":  # Gemma's tokenizer.json: spaces become ▁, nothing is prepended
            tok.normalizer = normalizers.Replace(" ", "▁")
            tok.decoder = decoders.Replace("▁", " ")
        else:  # Mistral's: Metaspace, a ▁ prepended to the first word
            tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first")
            tok.decoder = decoders.Metaspace(prepend_scheme="first")
        alphabet = sorted({c for text in corpus for c in text.replace(" ", "▁")})
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=list(family.specials),
                                  initial_alphabet=alphabet, show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    named = {"bos_token": family.bos, "eos_token": family.eos, "pad_token": family.pad,
             "unk_token": "<unk>" if "<unk>" in family.specials else None}
    named = {k: v for k, v in named.items() if v is not None}
    extra = [t for t in family.specials if t not in named.values()]
    template = (TEMPLATES / family.template).read_text().rstrip("\n")
    return PreTrainedTokenizerFast(tokenizer_object=tok, additional_special_tokens=extra,
                                   chat_template=template, **named)
