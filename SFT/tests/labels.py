"""The labels SFT must produce, computed without axolotl: render a conversation with the
tokenizer's chat template, find each message's text in it, and train exactly the tokens of the
assistant turns plus the turn terminator that follows each (user and observation turns, role
headers and the BOS get -100)."""

from __future__ import annotations

IGNORE = -100


def expected_labels(tokenizer, messages: list[dict], terminator: str) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one conversation; `terminator` closes a model turn in the template
    (`<end_of_turn>` for Gemma, `</s>` for Mistral)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    trained, cursor = [], 0
    for m in messages:
        content = m["content"].strip()
        start = text.index(content, cursor)
        cursor = start + len(content)
        if m["role"] == "assistant":
            end = text.index(terminator, cursor) + len(terminator)
            if text[cursor:end - len(terminator)].strip():
                raise ValueError(f"text between an assistant turn and its terminator: {text[cursor:end]!r}")
            trained.append((start, end))
            cursor = end
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for tid, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True):
        inside = any(s <= a and b <= e and a < b for s, e in trained) or any(
            a < s < b and text[a:s].isspace() for s, e in trained)  # " The": a leading space merged in
        labels.append(tid if inside else IGNORE)
    return enc["input_ids"], labels
