"""The `paper` grader reproduces the official grader's decisions (SPEC 3.4, FIELD 5)."""

import json
from pathlib import Path

import pytest

from inference.grading import Pair, grade_now
from inference.grading.paper import grade_paper, math_equal

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("pred, ref, expected", [
    # SPEC 3.4 verified examples
    ("500", "5", True),  # percentage leniency on every number
    ("0.5", "50", True),
    ("5000", "50", True),
    ("2.0001", "2", True),  # relative 1e-4
    ("2.001", "2", False),
    ("(1,2)", "(1,2)", True),
    ("[1,2]", "(1,2)", False),
    ("\\frac{x}{7}+\\frac{2}{7}", "\\frac{x+2}{7}", True),
    ("x+1", "1+x", True),
    ("\\sqrt{2}", "1.41421356", True),  # N() within 1e-3
    ("0.5", "\\frac{1}{2}", True),
    ("3.1416", "\\pi", False),  # \pi parses as a symbol
    ("{1,2}", "{2,1}", False),
    ("A", "a", False),
    ("", "0", False),  # an empty prediction is always wrong
    # FIELD 5 local probe, ToRA column
    ("1.0001", "1", True),
    ("(1,2]", "[1,2)", False),
    ("3,5", "5,3", False),
    ("18{,}000", "18000", False),
    ("45", "\\frac{\\pi}{4}", False),
    ("1,000", "1000", True),  # commas go before the numeric check
    ("(1,4.5)", "(1,\\frac{9}{2})", True),  # element-wise tuples
])
def test_math_equal_documented_decisions(pred, ref, expected):
    assert math_equal(pred, ref) is expected


def test_leniency_flags():
    assert math_equal("500", "5", include_percentage=False) is False
    assert math_equal("2.0001", "2", is_close=False) is False
    assert math_equal("2", "2", include_percentage=False, is_close=False) is True


def test_prediction_gets_the_second_strip_string():
    """run_execute strips the extracted prediction again (SPEC 3.3): `\\sqrt 3` -> `\\sqrt3` ->
    `\\sqrt{3}`; the grader must see what the reference saw."""
    assert grade_paper("\\sqrt3", "\\sqrt{3}")
    assert grade_now(Pair("x = 5", "5"), "paper")


def test_dunder_strings_are_not_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    evil = f"__import__('pathlib').Path('{marker}').touch()"
    assert grade_paper(evil, "1") is False
    assert not marker.exists()


def test_reproduces_reference_decisions_on_math_and_gsm8k_answers():
    """960 prediction/answer pairs drawn from MATH and GSM8K answers (equal rewrites, percentage
    and tolerance traps, other problems' answers, units, reorderings), each with the decision
    written from the reference grader's documented rules (SPEC 3.4; the official grader was not
    run to produce them); ours must agree on every one."""
    rows = [json.loads(line) for line in (DATA / "grader_paper_decisions.jsonl").open()]
    assert len(rows) >= 900
    assert {r["expected"] for r in rows} == {True, False}
    wrong = [r for r in rows if grade_paper(r["pred"], r["gt"]) is not r["expected"]]
    assert wrong == []
