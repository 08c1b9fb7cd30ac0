"""Generation output: one JSON line per finished trajectory (written by `inference.generate`).

A trajectory is keyed by `id` = f"{idx}:{sample}" within one run file; re-running the same
command skips ids already present, so the file is append-only and never holds duplicates.

Fields
- id (str), idx (str: the problem's id in its data set), sample (int: 0..n-1)
- question (str), gt (str: normalised ground truth; "" when unknown), gt_cot (str, optional)
- messages (list of {role, content}): user question, then assistant / user("```output ...")
  turns, exactly as the chat template will render them for training
- pred (str: extracted final answer, normalised; "" when none)
- stop_reason: one of STOP_REASONS
- turns (int: model calls made), prompt_tokens (int), generated_tokens (int)
- model (str), seed (int), sampling (dict: temperature, top_p, top_k, max_tokens_per_turn, ...)
- source (str, optional: which model of a mixture produced it, e.g. "current", "previous")
- extra (dict, optional: data-set columns kept for reports, e.g. MATH `level`, `type`)
- error (str or null: why a trajectory failed; stop_reason is then "failed")
"""

from __future__ import annotations

from ._common import Field, FormatError, check_fields, check_messages, check_version, read_validated

FORMAT_VERSION = 1
STOP_REASONS = ("answer", "no_code", "max_turns", "max_tokens", "context", "failed")
MAX_CALLS_MARKER = "Reach max function call limit."  # the reference's final turn at the turn cap

FIELDS = (
    Field("id", (str,)), Field("idx", (str,)), Field("sample", (int,)),
    Field("question", (str,)), Field("gt", (str,)), Field("gt_cot", (str,), required=False),
    Field("messages", (list,)), Field("pred", (str,)), Field("stop_reason", (str,)),
    Field("turns", (int,)), Field("prompt_tokens", (int,)), Field("generated_tokens", (int,)),
    Field("model", (str,)), Field("seed", (int,)), Field("sampling", (dict,)),
    Field("source", (str,), required=False), Field("extra", (dict,), required=False),
    Field("error", (str,), required=False), Field("format_version", (int,)),
)


def validate(record: dict, path: str, line: int | None = None) -> dict:
    check_fields(record, FIELDS, path, line)
    check_messages(record["messages"], path, line)
    if record["stop_reason"] not in STOP_REASONS:
        raise FormatError(path, line, "stop_reason", f"expected one of {STOP_REASONS}")
    check_version(record, FORMAT_VERSION, path, line)
    return record


def read(path: str, skip_bad_lines: bool = False, bad_lines: list[int] | None = None):
    """Yield validated records; bad lines raise FormatError unless skipped (and counted)."""
    return read_validated(path, validate, skip_bad_lines, bad_lines)
