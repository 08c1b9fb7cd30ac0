"""Loading problems: GSM8K, MATH and prompt sets from local JSONL, slicing, and bad input."""

import json
from pathlib import Path

import pytest

from inference.grading.extract import strip_string
from inference.problems import DataConfig, DataError, load_problems

DATA = Path(__file__).resolve().parents[1] / "data"  # the test sets shipped with the repository


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k():
    path = DATA / "gsm8k" / "test.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    problems = load_problems(DataConfig(path=str(path), name="gsm8k"))
    assert len(problems) == len(path.read_text().splitlines())
    p = problems[0]
    assert p.question == first["question"].strip()
    assert p.gt == strip_string(first["answer"].split("####")[1]) and p.gt
    assert p.gt_cot and "####" not in p.gt_cot
    assert len({q.idx for q in problems}) == len(problems) == 1319


def test_math():
    path = DATA / "math" / "test.jsonl"
    p = load_problems(DataConfig(path=str(path), name="math", limit=1))[0]
    row = json.loads(path.read_text().splitlines()[0])
    assert p.question == row["problem"].strip() and p.gt_cot == row["solution"].strip()
    assert p.gt and "boxed" not in p.gt
    assert p.extra == {"level": row["level"], "type": row["type"]}


def test_prompt_set_rows_carry_their_ground_truth(tmp_path):
    """RLHF4MATH/prompt_iterN rows: a question with gt and gt_cot already filled in."""
    path = write(tmp_path / "iter1.jsonl", [
        {"idx": "a1", "question": "1+1?", "gt": "2", "gt_cot": "1+1=2"},
        {"idx": "a2", "problem": "2+2?", "gt": "4.0", "gt_cot": "2+2=4"}])
    problems = load_problems(DataConfig(path=str(path), name="prompt_iter"))
    assert [(p.idx, p.question, p.gt, p.gt_cot) for p in problems] == [
        ("a1", "1+1?", "2", "1+1=2"), ("a2", "2+2?", "4", "2+2=4")]


def test_start_end_limit_and_positional_idx(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(10)])
    picked = load_problems(DataConfig(path=str(path), start=2, end=8, limit=3))
    assert [(p.idx, p.question, p.gt) for p in picked] == [("2", "q2", "2"), ("3", "q3", "3"), ("4", "q4", "4")]
    assert len(load_problems(DataConfig(path=str(path), start=7))) == 3


def test_shares_are_equal_and_disjoint(tmp_path):
    path = write(tmp_path / "q.jsonl", [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(10)])
    shares = [[p.idx for p in load_problems(DataConfig(path=str(path), share=f"{k}/3"))] for k in (1, 2, 3)]
    assert shares == [["0", "1", "2"], ["3", "4", "5"], ["6", "7", "8"]]
    assert [p.idx for p in load_problems(DataConfig(path=str(path), start=4, share="2/2", limit=2))] == ["7", "8"]
    with pytest.raises(DataError, match="data.share '4/3': expected k/N"):
        load_problems(DataConfig(path=str(path), share="4/3"))


@pytest.mark.parametrize("content, message", [
    ('{"question": "a", "answer": "#### 1"}\n{"question": \n', "q.jsonl, line 2: not valid JSON"),
    ('{"question": "a", "answer": "#### 1", "idx": 1}\n{"question": "b", "answer": "#### 2", "idx": 1}\n',
     "q.jsonl, line 2: idx '1' appears twice"),
    ('{"question": "a", "answer": "#### 1"}\n\n{"question": "b"}\n', "q.jsonl, line 3: gsm8k: missing field 'answer'"),
    ('{"text": "a", "answer": "#### 1"}\n', "q.jsonl, line 1: gsm8k: no question field"),
])
def test_bad_rows_name_the_file_and_the_line(tmp_path, content, message):
    (tmp_path / "q.jsonl").write_text(content)
    with pytest.raises(DataError, match=message):
        load_problems(DataConfig(path=str(tmp_path / "q.jsonl")))


def test_missing_file_is_not_mistaken_for_a_hub_id(tmp_path):
    with pytest.raises(DataError, match="no such file, and not a Hub data set id"):
        load_problems(DataConfig(path=str(tmp_path / "nope.jsonl")))


def test_hub_failure_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load 'no-such-org/no-such-set'.*from the Hugging Face Hub"):
        load_problems(DataConfig(path="no-such-org/no-such-set", split="train"))


def test_idx_file_keeps_the_prompts_a_training_run_held_out(tmp_path):
    from formats import heldout

    path = write(tmp_path / "q.jsonl", [{"question": f"q{i}", "answer": f"#### {i}"} for i in range(10)])
    heldout.write(tmp_path / "held.json", ["6", "3"], 0.2, 42)
    picked = load_problems(DataConfig(path=str(path), start=2, end=8, idx_file=str(tmp_path / "held.json")))
    assert [(p.idx, p.question) for p in picked] == [("3", "q3"), ("6", "q6")]
    # A held-out prompt outside the selected rows means the wrong prompt file or slice: an error.
    with pytest.raises(DataError, match=r"held.json: 1 of its 2 prompts are not among the selected rows"):
        load_problems(DataConfig(path=str(path), start=4, end=8, idx_file=str(tmp_path / "held.json")))
    (tmp_path / "bad.json").write_text('{"idx": [], "fraction": 0.2, "seed": 1, "format_version": 1}')
    with pytest.raises(DataError, match=r"bad.json: field 'idx': expected a non-empty list"):
        load_problems(DataConfig(path=str(path), idx_file=str(tmp_path / "bad.json")))
