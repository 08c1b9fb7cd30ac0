"""Prepare a base model whose tokenizer has no padding token for SFT, as the paper did for
Mistral-7B-v0.3 (SPEC §6: `useful_codes/set_padding_token.py` -> `./models/mistral_with_pad`).

Adds `[PAD]` as a special token, grows the embeddings to the new vocabulary, records the id in
the model's config and generation config, and installs the chat template of FastChat's `mistral`
conversation, which the reference trained with (`conversation: mistral`):
    <s>[INST] {user} [/INST] {assistant}</s>[INST] {observation} [/INST] {assistant}</s>
A tokenizer that already has a padding token keeps it (running twice changes nothing).

    .venv-sft/bin/python SFT/add_pad_token.py mistralai/Mistral-7B-v0.3 runs/models/mistral-7b-v0.3-pad
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# FastChat `mistral` (SeparatorStyle.LLAMA2, sep " ", sep2 "</s>"), no system message.
FASTCHAT_MISTRAL_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('only user and assistant turns: got ' + message['role']) }}"
    "{% endif %}"
    "{% endfor %}"
)


def add_pad_token(src: str, dst: str | Path, pad_token: str = "[PAD]",  # noqa: S107 - a token, not a password
                  chat_template: str | None = FASTCHAT_MISTRAL_TEMPLATE) -> int:
    """Write the padded model and tokenizer to `dst`; return the padding token's id.
    `chat_template=None` keeps the tokenizer's own template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src)
    model = AutoModelForCausalLM.from_pretrained(src, dtype="auto")
    if tokenizer.pad_token is None:
        tokenizer.add_special_tokens({"pad_token": pad_token})
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))  # new rows: the mean of the old ones
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    Path(dst).mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(dst)
    model.save_pretrained(dst)
    return tokenizer.pad_token_id


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", help="model folder or Hub id (e.g. mistralai/Mistral-7B-v0.3)")
    ap.add_argument("dst", type=Path, help="folder to write the padded model to")
    ap.add_argument("--pad-token", default="[PAD]")
    ap.add_argument("--keep-chat-template", action="store_true",
                    help="keep the tokenizer's own template instead of FastChat's mistral one")
    args = ap.parse_args(argv)
    pad_id = add_pad_token(args.src, args.dst, args.pad_token,
                           None if args.keep_chat_template else FASTCHAT_MISTRAL_TEMPLATE)
    print(f"{args.dst}: padding token id {pad_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
