"""Prompt formats: the reference's literal strings, and chat templates of any shape."""

import logging

import pytest
from transformers import AutoTokenizer

from inference.prompts import PromptError, make_format, observation_content

Q = "Tom has 3 apples and buys 4. How many?"
A1 = "Let me compute.\n```python\nprint(3 + 4)\n```"
A2 = "The answer is $\\boxed{7}$."
INSTR = ("Please integrate natural language reasoning with programs to solve the problem above, "
         "and put your final answer within \\boxed{}.")

# SPEC 1.2, string for string: initial prompt, then A1, then the observation appended after it.
EXPECTED = {
    "gemma": "<bos><start_of_turn>user\n" + Q + "<end_of_turn>\n<start_of_turn>model\n" + A1
             + "<end_of_turn>\n<start_of_turn>user\n```output\n7\n```<end_of_turn>\n<start_of_turn>model\n",
    "mistral": "<s> [INST] " + Q + " [/INST]" + A1 + "</s> [INST] ```output\n7\n``` [/INST]",
    # llama3 with the reference's bug fixed: the question is in the prompt.
    "llama3": "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n" + Q + "\n" + INSTR
              + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" + A1
              + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n```output\n7\n```"
              + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "deepseek": "User: " + Q + "\n" + INSTR + "\n\nAssistant: " + A1 + "\n```output\n7\n```\n",
}
STOPS = {
    "gemma": ["<end_of_turn>", "<eos>", "```output", "<start_of_turn>"],
    "mistral": ["<s>", "</s>", "[INST]", "```output"],
    "llama3": ["<|eot_id|>", "<|start_header_id|>user", "```output"],
    "deepseek": ["<｜end▁of▁sentence｜>", "User", "```output"],
}
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


@pytest.fixture
def tok(tiny_world):
    return AutoTokenizer.from_pretrained(tiny_world / "model")


def conversation(fmt):
    return [{"role": "user", "content": fmt.user_content(Q)}, {"role": "assistant", "content": A1},
            {"role": "user", "content": observation_content("7")}]


@pytest.mark.parametrize("name", list(EXPECTED))
def test_literal_formats_are_the_references_strings(tok, name):
    fmt = make_format(name, tok)
    assert fmt.render(conversation(fmt)) == EXPECTED[name]
    assert fmt.stop == STOPS[name]
    assert tok.eos_token_id in fmt.stop_token_ids


def test_llama3_prompt_holds_the_question(tok):
    fmt = make_format("llama3", tok)
    assert Q in fmt.render([{"role": "user", "content": fmt.user_content(Q)}])


def test_gemma_chat_template_renders_like_the_gemma_literal(tok):
    """The tiny world's template is Gemma's: both routes give the same text, and the turn end
    is read off the template (<end_of_turn>), not hard-coded."""
    chat, lit = make_format("chat_template", tok), make_format("gemma", tok)
    msgs = conversation(chat) + [{"role": "assistant", "content": A2}]
    assert chat.render(msgs[:3]) == lit.render(msgs[:3])
    assert tok.convert_tokens_to_ids("<end_of_turn>") in chat.stop_token_ids
    assert chat.stop == ["```output"]


def test_turn_end_comes_from_any_template(tok):
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = CHATML
    fmt = make_format("chat_template", tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end in fmt.stop_token_ids
    assert tok.convert_tokens_to_ids("<end_of_turn>") not in fmt.stop_token_ids
    assert fmt.render(conversation(fmt)).endswith("```output\n7\n```<|im_end|>\n<|im_start|>assistant\n")


def test_plain_text_turn_end_becomes_a_stop_string(tok):
    tok.chat_template = ("{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n### end\n"
                         "{% endfor %}{% if add_generation_prompt %}### assistant: {% endif %}")
    fmt = make_format("chat_template", tok)
    assert fmt.stop == ["```output", "### end"]


def test_template_without_generation_prompt_is_refused(tok):
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    with pytest.raises(PromptError, match="adds no generation prompt"):
        make_format("chat_template", tok, source="my-model")


def test_tokenizer_without_template_is_refused(tok):
    tok.chat_template = None
    with pytest.raises(PromptError, match="has no chat template"):
        make_format("chat_template", tok)


def test_unknown_format_is_refused(tok):
    with pytest.raises(PromptError, match="unknown prompt_format 'llama'"):
        make_format("llama", tok)


def test_exactly_one_bos(tok):
    bos = tok.bos_token_id
    for name in ("chat_template", "gemma", "deepseek"):
        fmt = make_format(name, tok)
        ids = fmt.encode(fmt.render(conversation(fmt)[:1]))
        assert ids[0] == bos and ids.count(bos) == 1, name


def test_next_prompt_extends_the_previous_prompt(tok):
    fmt = make_format("chat_template", tok)
    msgs = conversation(fmt)
    previous = fmt.render(msgs[:1])
    nxt = fmt.next_prompt(previous, A1 + "\n", msgs)
    assert nxt == fmt.render(msgs) and nxt.startswith(previous + A1)


def test_template_that_rewrites_history_falls_back_to_raw_text(tok, caplog):
    """A template whose rendering of earlier turns changes as the conversation grows (here:
    a message count in the header) cannot be re-rendered without changing what the model saw."""
    tok.chat_template = ("<bos>[{{ messages|length }}]{% for m in messages %}<start_of_turn>{{ m['role'] }}\n"
                         "{{ m['content'] }}<end_of_turn>\n{% endfor %}"
                         "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
    fmt = make_format("chat_template", tok)
    msgs = conversation(fmt)
    previous = fmt.render(msgs[:1])
    with caplog.at_level(logging.WARNING, logger="inference.prompts"):
        nxt = fmt.next_prompt(previous, A1 + "\n", msgs)
        fmt.next_prompt(previous, A1 + "\n", msgs)
    assert nxt == (previous + A1 + "\n<end_of_turn>\n<start_of_turn>user\n```output\n7\n```"
                   "<end_of_turn>\n<start_of_turn>model\n")
    assert sum("prefix-consistently" in r.message for r in caplog.records) == 1


# FastChat's `mistral` conversation, the template SFT/add_pad_token.py installs for Mistral-7B-v0.3 (SPEC 6).
FASTCHAT_MISTRAL = ("{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
                    "{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}"
                    "{% endif %}{% endfor %}")


def test_a_template_whose_prompt_ends_at_the_user_turns_close_is_accepted(tok):
    """Found rehearsing configs/mistral-7b-v0.3_mdpo.yaml: FastChat's Mistral template has no generation
    prompt (the closing [/INST] is the cue, a reply follows after one space), and generation refused it;
    every Mistral config would have stopped at its first generation on the GPU node too."""
    from inference.backends import Completion
    from inference.generate import Limits, Trajectory
    from inference.problems import Problem

    tok.chat_template = FASTCHAT_MISTRAL
    fmt = make_format("chat_template", tok, source="mistral")
    assert fmt.reply_prefix == " " and tok.eos_token_id in fmt.stop_token_ids
    t = Trajectory(Problem("1", Q, "7", "", {}), 0, 0, fmt, Limits(6, 512, 2048, None))
    assert t.text.endswith(Q + " [/INST]")
    # A byte-level tokenizer decodes the reply's first token with its space: the content must not keep
    # it, or every later render (and the training data) would hold two spaces.
    assert t.take_turn(Completion(" " + A1, 10, "stop")) == ["print(3 + 4)"]
    assert t.messages[-1]["content"] == A1
    t.observe("7")
    assert t.text == (tok.bos_token + "[INST] " + Q + " [/INST] " + A1 + tok.eos_token
                      + "[INST] ```output\n7\n``` [/INST]")
