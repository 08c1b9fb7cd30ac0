"""Extraction and normalisation follow the reference's documented rules (SPEC 3.1-3.3)."""

import json
from pathlib import Path

import pytest

from inference.grading import (
    extract_answer,
    extract_raw_answer,
    parse_ground_truth,
    parse_question,
    raw_ground_truth,
    strip_string,
)

DATA = Path(__file__).resolve().parents[1] / "data"  # the test sets shipped with the repository


@pytest.mark.parametrize("text, expected", [
    # SPEC 3.1 verified examples
    ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("The answer is: 42.", "42"),
    ("\\boxed{a}\\boxed{b}", "b"),
    ("\\boxed{10\\%}", "10"),
    ("\\boxed{x = 3}", "3"),
    ("there are 3 apples and 4.5 pears", "4.5"),
    # the fallbacks, in order
    ("\\boxed 5$ and more", "5"),
    ("\\fbox{7} then 8", "8"),  # `\fbox` is not `boxed`: last number
    ("```output\n17\n```\nso it is", "17"),
    ("The answer is 3 but \\boxed{4}", "4"),
    ("I got 1,234 apples", "1234"),
    ("no digits here", ""),
    ("Reach max function call limit.", ""),
    ("\\boxed{\\frac{1}{2}", "\\frac{1}{2}"),  # unclosed brace: runs to the end
    ("\\boxed{}", ""),
    ("ends with boxed", ""),
    ("The answer is\n\n12\nthen 13", "12"),  # stripped, then only the first line is kept
    ("The answer is :7/", "7"),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("raw, expected", [
    # SPEC 3.2 table, one row each
    ("5\n6", "56"),
    ("0.5.", "0.5"),
    ("1\\ 000", "1000"),
    ("\\dfrac{1}{2}", "\\frac{1}{2}"),
    ("\\left( 3, 4 \\right)", "(3,4)"),
    ("10\\text{ miles}", "10"),
    ("\\text{ miles}", "{miles}"),  # unit removal only when something is left
    ("45^\\circ", "45"),
    ("\\$1,000", "1,000"),
    ("\\text{(A)}", "{(A)}"),
    ("50\\%", "50"),
    ("{.5}", "{0.5}"),
    ("3\\cdot 4", "34"),
    ("-inf", "-\\infty"),
    ("infinity", "\\infty"),
    ("a and b", "ab"),
    ("\\mbox{cm}5", "5"),
    ("3j", "3i"),
    ("2.000", "2"),
    ("2.50", "2.50"),
    (" .5", "0.5"),
    ("x = 5", "5"),
    ("y=2x+1", "2x+1"),
    ("abc=1", "abc=1"),
    ("k=\\sqrt3", "\\sqrt{3}"),
    ("\\frac12", "\\frac{1}{2}"),
    ("\\frac1{72}", "\\frac{1}{72}"),
    ("\\frac1", "\\frac1"),
    ("1/2", "\\frac{1}{2}"),
    ("01/2", "01/2"),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}"),
    ("", ""),
])
def test_strip_string(raw, expected):
    assert strip_string(raw) == expected


def test_raw_answer_keeps_what_strip_string_loses():
    assert extract_raw_answer("so \\boxed{3\\cdot 4}.") == "3\\cdot 4"
    assert extract_raw_answer("\\boxed{10\\%}") == "10\\%"
    assert extract_answer("\\boxed{10\\%}") == strip_string(extract_raw_answer("\\boxed{10\\%}"))


def test_ground_truth_gsm8k_math_and_carried():
    assert parse_ground_truth({"answer": "2+2=4\n#### 1,234"}, "gsm8k") == ("2+2=4", "1,234")
    cot, gt = parse_ground_truth({"solution": "So $\\boxed{\\dfrac{1}{2}}$."}, "math")
    assert (cot, gt) == ("So $\\boxed{\\dfrac{1}{2}}$.", "\\frac{1}{2}")
    assert parse_ground_truth({"gt_cot": "c", "gt": "x = 5"}, "RLHF4MATH/prompt_iter1") == ("c", "5")
    assert parse_ground_truth({"gt": " 7 "}, "whatever") == ("", "7")
    with pytest.raises(ValueError, match="'####' exactly once"):
        parse_ground_truth({"idx": 3, "answer": "#### 1 #### 2"}, "gsm8k")
    with pytest.raises(ValueError, match="missing field 'solution'"):
        parse_ground_truth({"answer": "#### 1"}, "math")
    with pytest.raises(ValueError, match="cannot find the ground truth"):
        parse_ground_truth({"question": "q"}, "svamp")


def test_raw_ground_truth_only_when_consistent():
    cot = "Hence $\\boxed{50\\%}$."
    assert raw_ground_truth("50", cot) == "50\\%"
    assert raw_ground_truth("51", cot) == "51"  # gt_cot does not belong to this gt
    assert raw_ground_truth("18", "so 18 eggs") == "18"


def test_parse_question():
    assert parse_question({"problem": "  What is 1+1? "}, "math") == "What is 1+1?"
    assert parse_question({"question": "Q", "problem": "P"}, "gsm8k") == "Q"
    with pytest.raises(ValueError, match="no question field"):
        parse_question({"idx": 1}, "gsm8k")
    with pytest.raises(ValueError, match="is empty"):
        parse_question({"question": "  "}, "gsm8k")


def test_tiny_world_rows(tiny_world):
    rows = [json.loads(line) for line in (tiny_world / "data" / "test.jsonl").open()][:20]
    for row in rows:
        cot, gt = parse_ground_truth(row, "gsm8k")
        assert gt == row["answer"].split("####")[1].strip()
        assert parse_question(row, "gsm8k") == row["question"].strip()


def test_math_ground_truths_are_stable():
    """Every MATH answer but one extracts to a non-empty string (the reference turns problem 3526's
    `\\mbox{Saturday}` into ""), and one more `strip_string` (what the reference's `run_execute`
    applies to predictions) changes nothing."""
    empty = []
    for line in (DATA / "math" / "test.jsonl").open():
        row = json.loads(line)
        _, gt = parse_ground_truth(row, "math")
        if not gt:
            empty.append(row["idx"])
        assert strip_string(gt) == gt, row["idx"]
        assert raw_ground_truth(gt, row["solution"]) == extract_raw_answer(row["solution"])
    assert empty == [3526]
