"""File formats exchanged between stages: one module per format, validated on read."""

from ._common import FormatError, append_jsonl, iter_jsonl

__all__ = ["FormatError", "append_jsonl", "iter_jsonl"]
