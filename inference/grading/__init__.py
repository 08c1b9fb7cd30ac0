"""Answer extraction and grading: the reference's rules (`paper`) and a stricter grader (`strict`).

    from inference.grading import extract_answer, parse_ground_truth, grade, GradingPool
    grade(extract_answer(text), gt)                      # the paper's decision, 10 s time limit
    with GradingPool(("paper", "strict"), workers=2) as pool:
        grades = pool.grade_many([(pred, gt), ...])      # [Grade(scores={...}, timeouts=[...])]
"""

from .extract import (
    extract_answer,
    extract_raw_answer,
    parse_ground_truth,
    parse_question,
    raw_ground_truth,
    strip_string,
)
from .graders import BASELINES, GRADERS, VERSIONS, Pair, grade_now, grader_version
from .pool import DEFAULT_TIMEOUT_S, Grade, GradingPool, shared_pool


def grade(pred: str, gt: str, grader: str = "paper", *, pred_raw: str | None = None,
          gt_raw: str | None = None, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> bool:
    """One decision. `pred` as `extract_answer` gives it, `gt` as `parse_ground_truth` gives it;
    the raw strings, when known, let `strict` see what normalisation loses. With a `timeout_s`
    (the default) the call runs in a shared worker process and a timeout scores False; with
    `timeout_s=None` it runs here, unbounded."""
    pair = Pair(pred, gt, pred_raw, gt_raw)
    if timeout_s is None:
        return grade_now(pair, grader)
    return shared_pool().grade_many([pair], graders=(grader,), timeout_s=timeout_s)[0].scores[grader]


__all__ = ["BASELINES", "DEFAULT_TIMEOUT_S", "GRADERS", "VERSIONS", "Grade", "GradingPool", "Pair",
           "extract_answer", "extract_raw_answer", "grade", "grade_now", "grader_version",
           "parse_ground_truth", "parse_question", "raw_ground_truth", "shared_pool", "strip_string"]
