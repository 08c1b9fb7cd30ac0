"""Preference data: a `datasets.Dataset` saved with `save_to_disk` (written by `inference.pairs`,
read by `alignment_algorithms`), in TRL's conversational format with an explicit prompt.

Pairs (M-DPO), directory `<out>/dpo`:
- prompt: [ {role: user, content: question} ]  (the shared prefix, usually one user turn)
- chosen, rejected: the messages after the prompt: assistant, user("```output\n...\n```"), ...,
  ending with an assistant turn; observation turns are user turns and stay in the data: masking
  them is the trainer's job
- gt (str), idx (str)
RAFT trains on the `chosen` of these pairs: the reference's RAFT set is exactly that, `{messages:
chosen}` of the random pairs (SPEC 4.4 step 9), so it needs no directory of its own.

Unpaired (M-KTO), directory `<out>/kto`:
- prompt (as above), completion (messages after the prompt), label (bool), gt, idx

`<out>/stats.json` holds the counts. Validation here is on plain dicts so that the writer
(inference env) and the reader (alignment env) share it without sharing any other code.
"""

from __future__ import annotations

from ._common import Field, FormatError, check_fields, check_messages

FORMAT_VERSION = 1
PAIR_FIELDS = (Field("prompt", (list,)), Field("chosen", (list,)), Field("rejected", (list,)),
               Field("gt", (str,)), Field("idx", (str,)))
KTO_FIELDS = (Field("prompt", (list,)), Field("completion", (list,)), Field("label", (bool,)),
              Field("gt", (str,)), Field("idx", (str,)))


def _check_completion(messages: list, path: str, row: int, field: str) -> None:
    check_messages(messages, path, row, field)
    if messages[0]["role"] != "assistant" or messages[-1]["role"] != "assistant":
        raise FormatError(path, row, field, "must start and end with an assistant turn")
    for i, m in enumerate(messages):
        want = "assistant" if i % 2 == 0 else "user"
        if m["role"] != want:
            raise FormatError(path, row, f"{field}[{i}].role", f"expected {want} (turns alternate)")


def validate_pair(row: dict, path: str, index: int) -> dict:
    check_fields(row, PAIR_FIELDS, path, index)
    check_messages(row["prompt"], path, index, "prompt")
    _check_completion(row["chosen"], path, index, "chosen")
    _check_completion(row["rejected"], path, index, "rejected")
    return row


def validate_unpaired(row: dict, path: str, index: int) -> dict:
    check_fields(row, KTO_FIELDS, path, index)
    check_messages(row["prompt"], path, index, "prompt")
    _check_completion(row["completion"], path, index, "completion")
    return row
