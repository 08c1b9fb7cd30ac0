"""Bad input is refused with the file, the line and the field named."""

import json

import pytest

from formats import FormatError, append_jsonl, preference, scores, sft, trajectory


def record(**over):
    r = {"id": "3:0", "idx": "3", "sample": 0, "question": "q", "gt": "5",
         "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "\\boxed{5}"}],
         "pred": "5", "stop_reason": "answer", "turns": 1, "prompt_tokens": 4, "generated_tokens": 6,
         "model": "m", "seed": 1, "sampling": {"temperature": 1.0}, "format_version": 1}
    r.update(over)
    return r


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_valid_trajectory_round_trips(tmp_path):
    path = tmp_path / "run.jsonl"
    with open(path, "w") as fh:
        append_jsonl(fh, record())
        append_jsonl(fh, record(id="4:0", idx="4"))
    assert [r["id"] for r in trajectory.read(path)] == ["3:0", "4:0"]


@pytest.mark.parametrize("bad, field", [
    (lambda r: r.pop("pred"), "pred"),
    (lambda r: r.update(turns="2"), "turns"),
    (lambda r: r.update(sample=True), "sample"),
    (lambda r: r.update(stop_reason="tired"), "stop_reason"),
    (lambda r: r["messages"].append({"role": "tool", "content": "x"}), "messages[2].role"),
    (lambda r: r.update(format_version=99), "format_version"),
])
def test_bad_trajectory_names_file_line_and_field(tmp_path, bad, field):
    r = record()
    bad(r)
    path = write(tmp_path / "run.jsonl", [json.dumps(record()), json.dumps(r)])
    with pytest.raises(FormatError) as exc:
        list(trajectory.read(path))
    assert exc.value.line == 2 and exc.value.field == field
    assert str(path) in str(exc.value) and "line 2" in str(exc.value) and field in str(exc.value)


def test_truncated_line_is_an_error_unless_skipped(tmp_path):
    path = write(tmp_path / "run.jsonl", [json.dumps(record()), json.dumps(record(id="4:0"))[:40]])
    with pytest.raises(FormatError, match="line 2.*skip-bad-lines"):
        list(trajectory.read(path))
    bad: list[int] = []
    assert len(list(trajectory.read(path, skip_bad_lines=True, bad_lines=bad))) == 1
    assert bad == [2]


def test_scores_must_be_booleans(tmp_path):
    row = {"id": "1:0", "idx": "1", "sample": 0, "pred": "1", "gt": "1", "scores": {"paper": 1},
           "timeouts": [], "grader_version": "g1", "format_version": 1}
    path = write(tmp_path / "s.jsonl", [json.dumps(row)])
    with pytest.raises(FormatError, match="scores.paper"):
        list(scores.read(path))


def test_preference_rows_must_alternate_and_end_with_assistant():
    good = {"prompt": [{"role": "user", "content": "q"}], "gt": "1", "idx": "0",
            "chosen": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "o"},
                       {"role": "assistant", "content": "b"}],
            "rejected": [{"role": "assistant", "content": "c"}]}
    preference.validate_pair(good, "ds", 0)
    bad = dict(good, rejected=[{"role": "assistant", "content": "c"}, {"role": "user", "content": "o"}])
    with pytest.raises(FormatError, match="rejected"):
        preference.validate_pair(bad, "ds", 7)
    kto = {"prompt": good["prompt"], "completion": good["chosen"], "label": "yes", "gt": "1", "idx": "0"}
    with pytest.raises(FormatError, match="label"):
        preference.validate_unpaired(kto, "ds", 0)


def test_sft_rows_start_with_user(tmp_path):
    path = write(tmp_path / "sft.jsonl", [json.dumps({"messages": [{"role": "assistant", "content": "x"}]})])
    with pytest.raises(FormatError, match="line 1"):
        list(sft.read(path))
