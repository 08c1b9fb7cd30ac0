"""inference.filters: each rule drops what it should and only that, switches work, the report
adds up, and the token rule counts like the policy's chat template."""

import dataclasses
import os
from pathlib import Path

import pytest

from formats.trajectory import MAX_CALLS_MARKER
from inference.filters import RULES, Candidate, FilterConfig, apply_filters, count_tokens

Q = {"role": "user", "content": "What is 2 + 3?"}


def code(text: str = "print(2 + 3)") -> dict:
    return {"role": "assistant", "content": f"Compute it.\n```python\n{text}\n```"}


def obs(text: str = "5") -> dict:
    return {"role": "user", "content": f"```output\n{text}\n```"}


def final(text: str = "The answer is $\\boxed{5}$.") -> dict:
    return {"role": "assistant", "content": text}


def cand(turns: list[dict], correct: bool = True, pred: str = "5", stop: str = "answer",
         prompt: tuple = (Q,)) -> Candidate:
    messages = [*prompt, *turns]
    n_prompt = next(i for i, m in enumerate(messages) if m["role"] == "assistant") if any(
        m["role"] == "assistant" for m in messages) else len(messages)
    return Candidate(id="0:0", idx="0", sample=0, run=0, source="current", gt="5", pred=pred,
                     stop_reason=stop, correct=correct, messages=messages, n_prompt=n_prompt,
                     where="test, line 1")


CLEAN = [code(), obs(), final()]
# (rule, a trajectory only that rule matches among the rules that are on by default, or that
#  its switch adds)
CASES = {
    "ends_with_assistant": cand([code(), obs()]),
    "failed_generation": cand(CLEAN, stop="failed"),
    "require_tool_call": cand([final()]),
    "code_in_every_turn": cand([final("Let me think."), obs(), final()]),
    "environment_error": cand([code(), obs("IPython shell ERROR: kernel died"), final()]),
    "correct_error_in_last_observation": cand([code(), obs("NameError: x"), final()]),
    "error_in_last_observation": cand([code(), obs("NameError: x"), final("so $\\boxed{6}$")],
                                      correct=False),
    "boxed_after_error": cand([code(), obs("ValueError"), final()], correct=False),
    "empty_execution_error": cand([code(), {"role": "user", "content": "```output\nExecution error: \n```"},
                                   final()], correct=False),
    "empty_list_output": cand([code(), obs("[]"), final()]),
    "correct_none_in_last_observation": cand([code(), obs("None"), final()]),
    "traitlets_error": cand([code(), obs("traitlets.TraitError: bad"), final()], correct=False),
    "sympy_numbers_error": cand([code(), obs("TypeError in sympy.core.numbers"), final()], correct=False),
    "sympy_tensor_error": cand([code(), obs("index error in sympy.tensor.tensor"), final()], correct=False),
    "minlex_error": cand([code(), obs("minlex() got an unexpected keyword"), final()]),
    "missing_sympy_module": cand([code(), obs("No module named 'sympy.foo'"), final()]),
    "not_subscriptable": cand([code(), obs("'int' object is not subscriptable"), final()]),
    "max_turns": cand([code(), obs(), final(MAX_CALLS_MARKER)], correct=False, pred="", stop="max_turns"),
    "max_pred_chars": cand(CLEAN, pred="1" * 21),
}
ON = {"max_pred_chars": 20, "max_tokens": 2048}
DEFAULT_ON = {"ends_with_assistant", "failed_generation", "require_tool_call", "code_in_every_turn",
              "environment_error", "correct_error_in_last_observation"}


def _switched(name: str, on: bool) -> FilterConfig:
    if name == "ends_with_assistant":
        return FilterConfig()
    value = ON.get(name, True) if on else (0 if name in ON else False)
    return dataclasses.replace(FilterConfig(), **{name: value})


def test_defaults_are_the_paper_recipe():
    _, report = apply_filters([], FilterConfig())
    assert {n for n, r in report.items() if r["enabled"]} == DEFAULT_ON
    assert [r.name for r in RULES][0] == "ends_with_assistant"


def test_clean_trajectory_passes_every_rule():
    switches = {n: ON.get(n, True) for n in CASES if n != "ends_with_assistant"}
    cfg = dataclasses.replace(FilterConfig(), **switches)
    wrong = cand([code(), obs("6"), final("$\\boxed{6}$")], correct=False)
    kept, report = apply_filters([cand(CLEAN), wrong], cfg)
    assert len(kept) == 2 and not any(r["matched"] for r in report.values() if r["matched"] is not None)


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_drops_its_case(name):
    kept, report = apply_filters([CASES[name], cand(CLEAN)], _switched(name, on=True))
    assert len(kept) == 1 and kept[0].messages == cand(CLEAN).messages
    assert report[name]["removed"] == 1
    assert sum(r["removed"] for r in report.values()) == 1
    if name not in DEFAULT_ON:  # a switch that is off keeps it (and still reports the match)
        kept, report = apply_filters([CASES[name]], _switched(name, on=False))
        assert len(kept) == 1 and report[name]["removed"] == 0
        if name not in ON:
            assert report[name]["matched"] == 1


def test_correct_only_rules_keep_incorrect_trajectories():
    for name in ("correct_error_in_last_observation", "correct_none_in_last_observation"):
        wrong = dataclasses.replace(CASES[name], correct=False)
        kept, _ = apply_filters([wrong], _switched(name, on=True))
        assert kept == [wrong]


def test_case_sensitivity_follows_the_reference():
    # 'sympy.tensor.tensor' + 'error' is case-sensitive in SPEC 4.5; the others are not.
    upper = cand([code(), obs("ERROR from sympy.tensor.tensor"), final()], correct=False)
    assert apply_filters([upper], _switched("sympy_tensor_error", on=True))[0] == [upper]
    assert apply_filters([CASES["traitlets_error"]], _switched("traitlets_error", on=True))[0] == []


def test_last_observation_is_an_observation_not_the_question():
    # Without a tool call the reference's messages[-2] is the question; here there is no observation.
    q = {"role": "user", "content": "Is this an error?"}
    c = cand([final()], correct=True, prompt=(q,))
    cfg = dataclasses.replace(FilterConfig(), require_tool_call=False)
    assert apply_filters([c], cfg)[0] == [c]


def test_system_prompt_is_part_of_the_prompt():
    c = cand(CLEAN, prompt=({"role": "system", "content": "Use Python."}, Q))
    assert c.n_prompt == 2 and c.completion == CLEAN
    assert apply_filters([c], FilterConfig())[0] == [c]


def test_report_charges_the_first_rule():
    c = cand([final()], stop="failed")  # failed and without a tool call
    _, report = apply_filters([c], FilterConfig())
    assert report["failed_generation"] == {"enabled": True, "removed": 1, "matched": 1}
    assert report["require_tool_call"] == {"enabled": True, "removed": 0, "matched": 1}


def _tokenizer_path() -> Path:
    world = Path(os.environ.get("TINY_WORLD", Path(__file__).resolve().parents[2] / "runs" / "test_world"))
    if not (world / "model" / "tokenizer.json").exists():
        pytest.skip(f"no tiny world at {world}: `bash scripts/test.sh` builds it")
    return world / "model"


def test_max_tokens_counts_with_the_chat_template():
    from transformers import AutoTokenizer

    path = _tokenizer_path()
    short = cand(CLEAN)
    long = cand([code("x = 1\n" * 40), obs("1"), final()])
    count_tokens([short, long], str(path), batch_size=1)
    tok = AutoTokenizer.from_pretrained(str(path))
    for c in (short, long):
        assert c.n_tokens == len(tok.apply_chat_template(c.messages, tokenize=True)["input_ids"])
    assert short.n_tokens < long.n_tokens
    cfg = dataclasses.replace(FilterConfig(), max_tokens=short.n_tokens)
    kept, report = apply_filters([short, long], cfg)
    assert kept == [short] and report["max_tokens"]["removed"] == 1


def test_max_tokens_without_counts_is_an_error():
    with pytest.raises(RuntimeError, match="count_tokens"):
        apply_filters([cand(CLEAN)], dataclasses.replace(FilterConfig(), max_tokens=10))
