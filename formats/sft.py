"""SFT data: JSONL, one {"messages": [...]} per line, the RLHF4MATH/SFT_510K layout.

user(question), assistant(text + ```python block), user("```output\n...\n```"), ...,
assistant(final answer in \\boxed{}). Read by axolotl (`type: chat_template`).
"""

from __future__ import annotations

from ._common import Field, FormatError, check_fields, check_messages, read_validated

FIELDS = (Field("messages", (list,)),)


def validate(record: dict, path: str, line: int | None = None) -> dict:
    check_fields(record, FIELDS, path, line)
    check_messages(record["messages"], path, line)
    roles = [m["role"] for m in record["messages"]]
    if roles[0] != "user" or roles[-1] != "assistant":
        raise FormatError(path, line, "messages", "must start with user and end with assistant")
    return record


def read(path: str):
    return read_validated(path, validate)
