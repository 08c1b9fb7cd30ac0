"""The graders by name, what one grading call takes, and the versions recorded with scores."""

from __future__ import annotations

from typing import NamedTuple

GRADERS = ("paper", "strict")  # what evaluation reports; `paper` is the default (the paper's numbers)
BASELINES = ("math_verify",)   # compared against in tests and benchmarks only
# Bump a grader's version whenever its decisions may change: stale scores are then re-graded.
VERSIONS = {"paper": "1", "strict": "1", "math_verify": "0.9.0-1"}


class Pair(NamedTuple):
    """A prediction and its ground truth: normalised as the reference does (`extract_answer`,
    `parse_ground_truth`), plus the raw strings when known, which the strict grader prefers."""

    pred: str
    gt: str
    pred_raw: str | None = None
    gt_raw: str | None = None


def grader_version(graders: tuple[str, ...] | list[str]) -> str:
    """What goes in a score record's `grader_version`, e.g. `paper=1,strict=1`."""
    check_names(graders)
    return ",".join(f"{g}={VERSIONS[g]}" for g in graders)


def check_names(graders: tuple[str, ...] | list[str]) -> None:
    unknown = [g for g in graders if g not in VERSIONS]
    if unknown or not graders:
        raise ValueError(f"unknown grader(s) {unknown or graders}; choose from {sorted(VERSIONS)}")


def math_verify_equal(pred: str, gt: str) -> bool:
    """Plain math-verify as a baseline: both answers parsed as LaTeX in `$...$`, the gold first
    (its `verify` is asymmetric). Signal timeouts are off: the caller's pool enforces them."""
    from math_verify import parse, verify

    gold = parse(f"${gt}$", parsing_timeout=None)
    answer = parse(f"${pred}$", parsing_timeout=None)
    return bool(verify(gold, answer, timeout_seconds=None))


def grade_now(pair: Pair, grader: str) -> bool:
    """One decision, in this process and without a timeout (workers call this)."""
    if grader == "paper":
        from .paper import grade_paper

        return grade_paper(pair.pred, pair.gt)
    if grader == "strict":
        from .strict import grade_strict

        return grade_strict(pair.pred, pair.gt, pair.pred_raw, pair.gt_raw)
    if grader == "math_verify":
        return math_verify_equal(pair.pred_raw or pair.pred, pair.gt_raw or pair.gt)
    check_names([grader])
    raise AssertionError("unreachable")
