"""The turn mask read off real public chat templates, checked by decoding its masked and trained spans."""

from __future__ import annotations

import itertools

import pytest
from alignment_testdata import FAMILIES
from tokenizers import AddedToken

from alignment_algorithms.turn_mask import ChatTemplateError, tokenize_with_turn_mask

GEMMA = {"prompt": "<bos><start_of_turn>user\n{q}<end_of_turn>\n<start_of_turn>model\n",
         "first": "{a}<end_of_turn>\n", "obs": "<start_of_turn>user\n{o}<end_of_turn>\n",
         "later": "<start_of_turn>model\n{a}<end_of_turn>\n", "end": "<eos>"}
# What each family must train (1) and mask (0): SPEC 5.1's rule, in each template's own markup.
EXPECTED = {
    "gemma-1.1-it": GEMMA,
    "gemma-2-it": GEMMA,
    "mistral-v0.3": {"prompt": "<s>[INST] {q}[/INST]", "first": " {a}</s>", "obs": "[INST] {o}[/INST]",
                     "later": " {a}</s>", "end": ""},
    "llama-3": {"prompt": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{q}<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n",
                "first": "{a}<|eot_id|>", "obs": "<|start_header_id|>user<|end_header_id|>\n\n{o}<|eot_id|>",
                "later": "<|start_header_id|>assistant<|end_header_id|>\n\n{a}<|eot_id|>", "end": ""},
    "qwen2.5": {"prompt": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
                          "assistant.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n",
                "first": "{a}<|im_end|>\n", "obs": "<|im_start|>user\n{o}<|im_end|>\n",
                "later": "<|im_start|>assistant\n{a}<|im_end|>\n", "end": ""},
    "deepseek": {"prompt": "<｜begin▁of▁sentence｜>User: {q}\n\nAssistant:",
                 "first": " {a}<｜end▁of▁sentence｜>", "obs": "User: {o}\n\n",
                 "later": "Assistant: {a}<｜end▁of▁sentence｜>", "end": ""},
}


def decoded_runs(tokenizer, masked) -> list[tuple[int, str]]:
    """(label, text) for each run of equal labels, decoded incrementally as a streaming detokenizer does."""
    ids = masked.prompt_ids + masked.completion_ids
    labels = [0] * len(masked.prompt_ids) + masked.completion_mask

    def text(n: int) -> str:
        return tokenizer.decode(ids[:n], skip_special_tokens=False, clean_up_tokenization_spaces=False)

    runs, start = [], 0
    for label, group in itertools.groupby(labels):
        end = start + len(list(group))
        runs.append((label, text(end)[len(text(start)):]))
        start = end
    return runs


def expected_runs(form: dict, conversation: list[dict]) -> list[tuple[int, str]]:
    question, turns = conversation[0]["content"], conversation[1:]
    runs = [(0, form["prompt"].replace("{q}", question))]
    for i, turn in enumerate(turns):
        if turn["role"] == "assistant":
            runs.append((1, form["first" if i == 0 else "later"].replace("{a}", turn["content"])))
        else:
            runs.append((0, form["obs"].replace("{o}", turn["content"])))
    runs[-1] = (1, runs[-1][1] + form["end"])
    return runs


@pytest.fixture(scope="module")
def conversation(trajectories) -> list[dict]:
    longest = max(trajectories, key=len)
    assert sum(m["role"] == "user" for m in longest[1:]) >= 2, "want a trajectory with two observations"
    return longest


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_mask_trains_generated_tokens_only(name, family_tokenizers, conversation):
    tok = family_tokenizers[name]
    masked = tokenize_with_turn_mask(tok, conversation[:1], conversation[1:])
    assert decoded_runs(tok, masked) == expected_runs(EXPECTED[name], conversation)
    # The ids are those of TRL's own tokenisation of the whole conversation (plus Gemma's appended EOS).
    whole = tok.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    ids = masked.prompt_ids + masked.completion_ids
    assert ids[: len(whole)] == whole and len(ids) - len(whole) == (EXPECTED[name]["end"] != "")


@pytest.mark.parametrize("name", ["gemma-2-it", "llama-3"])
def test_single_turn_baseline_trains_observations_too(name, family_tokenizers, conversation):
    tok = family_tokenizers[name]
    masked = tokenize_with_turn_mask(tok, conversation[:1], conversation[1:], mask_observations=False)
    runs = decoded_runs(tok, masked)
    assert [label for label, _ in runs] == [0, 1]
    assert "```output" in runs[1][1]


def test_eos_appended_only_when_the_template_lacks_it(family_tokenizers, conversation):
    gemma, llama = family_tokenizers["gemma-2-it"], family_tokenizers["llama-3"]
    with_eos = tokenize_with_turn_mask(gemma, conversation[:1], conversation[1:])
    without = tokenize_with_turn_mask(gemma, conversation[:1], conversation[1:], append_eos=False)
    assert with_eos.completion_ids == without.completion_ids + [gemma.eos_token_id]
    assert with_eos.completion_mask == without.completion_mask + [1]
    assert gemma.decode(without.completion_ids[-2:]) == "<end_of_turn>\n"
    llama_masked = tokenize_with_turn_mask(llama, conversation[:1], conversation[1:])
    assert llama.decode(llama_masked.completion_ids[-1:]) == "<|eot_id|>"


@pytest.mark.parametrize("name", ["llama-3", "qwen2.5", "deepseek"])
def test_system_prompt_stays_in_the_masked_prompt(name, family_tokenizers, conversation):
    tok = family_tokenizers[name]
    prompt = [{"role": "system", "content": "Use Python."}, *conversation[:1]]
    runs = decoded_runs(tok, tokenize_with_turn_mask(tok, prompt, conversation[1:]))
    assert runs[0][0] == 0 and "Use Python." in runs[0][1]
    assert [label for label, _ in runs] == [0, 1, 0, 1] + [0, 1] * (len(runs) // 2 - 2)


def test_mistral_system_message_is_refused(family_tokenizers, conversation):
    """Mistral's template moves the system message into the last user turn, so prefixes disagree."""
    prompt = [{"role": "system", "content": "Use Python."}, *conversation[:1]]
    with pytest.raises(ChatTemplateError, match="Mistral"):
        tokenize_with_turn_mask(family_tokenizers["mistral-v0.3"], prompt, conversation[1:])


def test_template_that_rewrites_history_is_refused(family_tokenizers, conversation):
    """A template that drops earlier assistant turns (as reasoning templates do) defeats prefixes."""
    tok = family_tokenizers["gemma-2-it"]
    original = tok.chat_template
    tok.chat_template = ("{{ bos_token }}{% for m in messages %}"
                         "{% if m.role == 'assistant' and not loop.last %}"
                         "<start_of_turn>model\n<end_of_turn>\n{% else %}<start_of_turn>{{ m.role }}\n"
                         "{{ m.content }}<end_of_turn>\n{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    try:
        with pytest.raises(ChatTemplateError, match="differently"):
            tokenize_with_turn_mask(tok, conversation[:1], conversation[1:])
    finally:
        tok.chat_template = original


def test_token_across_a_turn_boundary_is_refused(family_tokenizers, conversation):
    tok = family_tokenizers["deepseek"]
    backend = tok.backend_tokenizer.__class__.from_str(tok.backend_tokenizer.to_str())
    merged = type(tok)(tokenizer_object=backend, bos_token=tok.bos_token, eos_token=tok.eos_token,
                       chat_template=tok.chat_template)
    merged.add_tokens([AddedToken("\n\nAssistant", normalized=False)])
    with pytest.raises(ChatTemplateError, match="crosses the turn boundary"):
        tokenize_with_turn_mask(merged, conversation[:1], conversation[1:])


def test_template_errors_surface(family_tokenizers, conversation):
    """Gemma's template itself refuses a system role; the error is not swallowed into a wrong mask."""
    from jinja2 import TemplateError

    prompt = [{"role": "system", "content": "Use Python."}, *conversation[:1]]
    with pytest.raises(TemplateError, match="System role not supported"):
        tokenize_with_turn_mask(family_tokenizers["gemma-1.1-it"], prompt, conversation[1:])
