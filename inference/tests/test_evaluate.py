"""The evaluation CLI: scores beside the run, metrics and report, resumable."""

import json

import pytest

from formats import scores as scores_format
from inference import evaluate
from inference.grading import GradingPool, extract_answer, grader_version, parse_ground_truth
from inference.grading.metrics import is_tool_error, pass_at_k

CONFIG = "inference/configs/evaluate.yaml"


def _traj(idx, sample, gt_row, data_name, answer_turn, observation="```output\n4\n```", extra=None,
          pred=None, gt=None):
    cot, parsed_gt = parse_ground_truth(gt_row, data_name)
    messages = [{"role": "user", "content": "Q?"},
                {"role": "assistant", "content": "```python\nprint(2+2)\n```"},
                {"role": "user", "content": observation},
                {"role": "assistant", "content": answer_turn}]
    return {"id": f"{idx}:{sample}", "idx": str(idx), "sample": sample, "question": "Q?",
            "gt": parsed_gt if gt is None else gt, "gt_cot": cot, "messages": messages,
            "pred": extract_answer(answer_turn) if pred is None else pred, "stop_reason": "answer",
            "turns": 2, "prompt_tokens": 5, "generated_tokens": 9, "model": "tiny", "seed": sample,
            "sampling": {"temperature": 1.0}, "extra": extra or {}, "format_version": 1}


def _write(path, trajs):
    path.write_text("".join(json.dumps(t) + "\n" for t in trajs))


@pytest.fixture
def run(tmp_path):
    """Two samples of three problems, outcomes chosen so every metric is known."""
    math_row = {"solution": "so $\\boxed{\\dfrac{1}{2}}$."}
    pct_row = {"answer": "5 * 1 = 5\n#### 5"}
    list_row = {"solution": "$\\boxed{3, 5}$"}
    trajs = [
        _traj(0, 0, math_row, "math", "It is $\\boxed{0.5}$.", extra={"type": "Algebra", "level": "Level 2"}),
        _traj(0, 1, math_row, "math", "It is $\\boxed{2}$.", extra={"type": "Algebra", "level": "Level 2"},
              observation="```output\nTraceback (most recent call last):\nNameError: name 'x'\n```"),
        _traj(1, 0, pct_row, "gsm8k", "So \\boxed{500}.", extra={"type": "Prealgebra", "level": "Level 1"}),
        _traj(1, 1, pct_row, "gsm8k", "So \\boxed{5}.", extra={"type": "Prealgebra", "level": "Level 1"},
              pred="6"),  # an older generator extracted something else
        _traj(2, 0, list_row, "math", "\\boxed{5,3}", extra={"type": "Algebra", "level": "Level 5"}),
        _traj(2, 1, list_row, "math", "Reach max function call limit.", extra={"type": "Algebra", "level": "Level 5"},
              observation="```output\nTimeout Error\n```"),
        _traj(3, 0, pct_row, "gsm8k", "\\boxed{5}", gt=""),  # no ground truth: skipped
    ]
    path = tmp_path / "run.jsonl"
    _write(path, trajs)
    return path


@pytest.fixture(scope="module")
def pool():
    with GradingPool(("paper", "strict"), timeout_s=20, workers=2) as p:
        yield p


def test_scores_metrics_and_report(run, pool):
    cfg = evaluate.EvaluateConfig(files=[str(run)])
    m = evaluate.evaluate_file(str(run), cfg, pool)
    paths = evaluate.output_paths(run)
    recs = {r["id"]: r for r in scores_format.read(str(paths["scores.jsonl"]))}
    assert set(recs) == {"0:0", "0:1", "1:0", "1:1", "2:0", "2:1"}
    assert recs["1:0"]["scores"] == {"paper": True, "strict": False}  # 500 for 5
    assert recs["2:0"]["scores"] == {"paper": False, "strict": True}  # 5,3 for 3,5
    assert recs["0:0"]["scores"] == {"paper": True, "strict": True}
    assert recs["0:0"]["grader_version"] == grader_version(["paper", "strict"])
    assert recs["1:1"]["pred"] == "5"
    assert m["n_scored"] == 6 and m["n_problems"] == 3 and m["no_gt"] == 1
    assert m["accuracy"]["paper"] == pytest.approx(100 * 3 / 6)
    assert m["accuracy"]["strict"] == pytest.approx(100 * 3 / 6)
    assert m["pass@1_by_sample"]["paper"] == {"0": pytest.approx(200 / 3), "1": pytest.approx(100 / 3)}
    assert m["pass@k"]["paper"]["2"] == pytest.approx(200 / 3)
    assert m["pass@k"]["strict"]["2"] == pytest.approx(100.0)
    assert m["by_subject"]["paper"]["Prealgebra"] == {"n": 2, "accuracy": 100.0}
    assert m["by_level"]["strict"]["Level 1"] == {"n": 2, "accuracy": 50.0}
    assert m["empty_predictions"] == 1  # the max-calls turn has no answer
    assert m["pred_differs_from_generator"] == 1
    assert m["tool_error_rate"] == pytest.approx(100 * 2 / 6)
    assert m["mean_turns"] == 2
    assert {d["id"] for d in m["disagreements"]} == {"1:0", "2:0"}
    assert json.loads(paths["metrics.json"].read_text())["accuracy"] == m["accuracy"]
    report = paths["report.md"].read_text()
    for heading in ("pass@k", "By MATH subject", "By level", "Disagreements between graders (2)",
                    "differ from the generator"):
        assert heading in report


def test_resume_grades_only_what_is_missing(run, pool):
    cfg = evaluate.EvaluateConfig(files=[str(run)])
    evaluate.evaluate_file(str(run), cfg, pool)
    scores_path = evaluate.output_paths(run)["scores.jsonl"]
    lines = scores_path.read_text().splitlines()
    stale = json.loads(lines[0])
    stale["grader_version"] = "paper=0,strict=0"
    lines[0] = json.dumps(stale)
    lines[-1] = lines[-1][:20]  # a torn last write
    scores_path.write_text("\n".join(lines) + "\n")
    trajs = [json.loads(x) for x in run.read_text().splitlines()]
    trajs.append(_traj(4, 0, {"answer": "#### 7"}, "gsm8k", "\\boxed{7}"))
    _write(run, trajs)

    graded = []

    class Counting:
        def grade_many(self, pairs, **kw):
            graded.extend(p.pred for p in pairs)
            return pool.grade_many(pairs, **kw)

    m = evaluate.evaluate_file(str(run), cfg, Counting())
    assert len(graded) == 3  # the stale line, the torn line, the new trajectory
    ids = [r["id"] for r in scores_format.read(str(scores_path))]
    assert sorted(ids) == sorted({*ids}) and len(ids) == 7
    assert m["n_scored"] == 7
    graded.clear()
    evaluate.evaluate_file(str(run), cfg, Counting())
    assert graded == []


def test_cli_with_positional_files(run, capsys):
    results = evaluate.main(["--config", CONFIG, str(run), "workers=1", "extra_graders=[math_verify]"])
    assert results[0]["graders"] == ["paper", "strict", "math_verify"]
    assert "graded" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["headline=fuzzy", str(run)])
    assert "headline" in str(exc.value)


def test_help_lists_fields(capsys):
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "headline" in out and "timeout_s" in out


def test_bad_run_line_is_located(tmp_path, pool):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "0:0"}\n')
    with pytest.raises(Exception, match=r"bad.jsonl, line 1: field 'idx': missing"):
        evaluate.evaluate_file(str(path), evaluate.EvaluateConfig(files=[str(path)]), pool)


def test_metric_helpers():
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 4, 2) == 1.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert is_tool_error("```output\nNameError: name 'x' is not defined\n```")
    assert is_tool_error("Execution error: division by zero")
    assert is_tool_error("```output\nTimeoutError: 'Timed Out'\n```")
    assert not is_tool_error("```output\n42\n```")
    assert not is_tool_error("```output\nthe error is small\n```")
