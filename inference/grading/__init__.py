"""Answer extraction and grading: the reference's rules (`paper`) and a stricter grader (`strict`)."""

from .extract import (
    extract_answer,
    extract_raw_answer,
    parse_ground_truth,
    parse_question,
    raw_ground_truth,
    strip_string,
)

__all__ = ["extract_answer", "extract_raw_answer", "parse_ground_truth", "parse_question",
           "raw_ground_truth", "strip_string"]
