"""Grading output: one JSON line per graded trajectory, in `<run>.scores.jsonl` beside the run.

Fields
- id (str): the trajectory's id in the run file; idx (str); sample (int)
- pred (str), gt (str): what was compared, after normalisation
- scores (dict grader-name -> bool): e.g. {"paper": true, "strict": false}
- timeouts (list of grader names that timed out; a timeout scores False)
- grader_version (str): `name=digest,...`, the digest of each grader's source and libraries
  (inference/grading/graders.py), so that any change re-grades stale scores and preference data
  built from stale scores is refused rather than silently mixed
"""

from __future__ import annotations

from ._common import Field, FormatError, check_fields, check_version, read_validated

FORMAT_VERSION = 1
FIELDS = (
    Field("id", (str,)), Field("idx", (str,)), Field("sample", (int,)),
    Field("pred", (str,)), Field("gt", (str,)), Field("scores", (dict,)),
    Field("timeouts", (list,)), Field("grader_version", (str,)), Field("format_version", (int,)),
)


def validate(record: dict, path: str, line: int | None = None) -> dict:
    check_fields(record, FIELDS, path, line)
    for name, value in record["scores"].items():
        if not isinstance(value, bool):
            raise FormatError(path, line, f"scores.{name}", "expected true or false")
    check_version(record, FORMAT_VERSION, path, line)
    return record


def read(path: str, skip_bad_lines: bool = False, bad_lines: list[int] | None = None):
    """Yield validated records; bad lines raise FormatError unless skipped (and counted)."""
    return read_validated(path, validate, skip_bad_lines, bad_lines)
