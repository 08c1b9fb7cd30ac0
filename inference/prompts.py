"""How a conversation becomes the text the model continues, and where a model turn ends.

Two kinds of format, chosen by name, never guessed from the model path (SPEC 8.13):
- `chat_template` (default): the tokenizer's own chat template, so any Hugging Face chat model
  works and generation sees exactly what training will render from the stored messages. The
  end-of-turn marker is read off the template, not hard-coded.
- `gemma`, `mistral`, `llama3`, `deepseek`: the reference's literal strings (SPEC 1.2), with its
  llama3 bug fixed (the question was missing from the prompt). Rendering is from the structured
  messages, so the llama3 "wrong answer split" (SPEC 8.15) cannot happen here.

Either way a turn also ends at "```output" (the model starting to imagine the tool's answer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

OUTPUT_FENCE = "```output"
TOOL_INSTRUCTION = ("Please integrate natural language reasoning with programs to solve the problem "
                    "above, and put your final answer within \\boxed{}.")
FORMATS = ("chat_template", "gemma", "mistral", "llama3", "deepseek")


class PromptError(ValueError):
    """A tokenizer or template that cannot drive the tool loop; the message says what to change."""


def observation_content(text: str) -> str:
    """The user turn that carries a tool result back to the model (SPEC 1.3)."""
    return f"{OUTPUT_FENCE}\n{text}\n```"


@dataclass(frozen=True)
class _Literal:
    """A reference format: fixed strings around the user and assistant turns (SPEC 1.2)."""

    head: str  # before the first user turn
    first_to_assistant: str  # after the first user turn, up to the assistant's first token
    assistant_to_user: str  # after an assistant turn, up to the observation
    user_to_assistant: str  # after an observation, up to the assistant's next token
    stop: tuple[str, ...]
    instruction: bool  # the question is followed by TOOL_INSTRUCTION


_LITERALS = {
    "gemma": _Literal("<bos><start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n",
                      "<end_of_turn>\n<start_of_turn>user\n", "<end_of_turn>\n<start_of_turn>model\n",
                      ("<end_of_turn>", "<eos>", OUTPUT_FENCE, "<start_of_turn>"), False),
    "mistral": _Literal("<s> [INST] ", " [/INST]", "</s> [INST] ", " [/INST]",
                        ("<s>", "</s>", "[INST]", OUTPUT_FENCE), False),
    # The reference's llama3 prompt left out {q} (SPEC 8.14); here the question comes first, as
    # in its own llama3 cot prompt and its deepseek prompt.
    "llama3": _Literal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
                       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                       "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n",
                       "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                       ("<|eot_id|>", "<|start_header_id|>user", OUTPUT_FENCE), True),
    # deepseek puts observations inline with no role switch ("as in the training of deepseek");
    # the stored messages still hold them as user turns.
    "deepseek": _Literal("User: ", "\n\nAssistant: ", "\n", "\n",
                         ("<｜end▁of▁sentence｜>", "User", OUTPUT_FENCE), True),
}


def _special_ids(tokenizer) -> set[int]:
    added = getattr(tokenizer, "added_tokens_decoder", {})
    return set(tokenizer.all_special_ids) | {i for i, t in added.items() if t.special}


class PromptFormat:
    """Renders messages to prompt text and token ids, and says where a model turn stops."""

    name: str
    stop: list[str]
    stop_token_ids: list[int]
    reply_prefix: str = ""  # what the format writes between the prompt and an assistant turn's content

    def __init__(self, tokenizer, eos_token_ids: list[int] | None = None):
        self.tokenizer = tokenizer
        self._eos = [i for i in (eos_token_ids or []) if i is not None]
        if tokenizer.eos_token_id is not None:
            self._eos.append(tokenizer.eos_token_id)
        self._warned = False

    def user_content(self, question: str) -> str:
        return question

    def render(self, messages: list[dict]) -> str:
        """The prompt text for the next assistant turn (generation header included)."""
        raise NotImplementedError

    def continuation(self, observation: str) -> str:
        """Text that follows a finished assistant turn and carries `observation` (raw fallback)."""
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        # The text already holds its BOS where the format wants one: adding special tokens
        # here would give the double BOS of the reference (SPEC 8.19).
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def next_prompt(self, previous: str, raw_turn: str, messages: list[dict]) -> str:
        """The next prompt, rendered from `messages` when that keeps `previous` as its prefix
        (nothing the model saw changes); otherwise the raw text is continued, said once."""
        rendered = self.render(messages)
        if rendered.startswith(previous):
            return rendered
        if not self._warned:
            log.warning("format %s does not render conversations prefix-consistently; continuing "
                        "the raw text instead (stored messages may render differently in training)",
                        self.name)
            self._warned = True
        return previous + raw_turn + self.continuation(messages[-1]["content"])

class ChatTemplateFormat(PromptFormat):
    """The tokenizer's chat template; the end-of-turn marker is derived from it."""

    name = "chat_template"

    def __init__(self, tokenizer, eos_token_ids: list[int] | None = None, source: str = "model"):
        super().__init__(tokenizer, eos_token_ids)
        if not getattr(tokenizer, "chat_template", None):
            raise PromptError(f"the tokenizer of {source} has no chat template; set prompt_format "
                              f"to one of {list(_LITERALS)} or use a tokenizer that has one")
        # The prompt must end where the template puts an assistant reply: after a generation header
        # (Gemma, ChatML), or, for a template with none, after the user turn's closing tag, up to
        # whitespace (FastChat's Mistral: "[INST] Q [/INST]" + " " + reply + "</s>").
        q, a = "Q7q", "A7q"
        prompt = self._apply([{"role": "user", "content": q}], True)
        full = self._apply([{"role": "user", "content": q}, {"role": "assistant", "content": a}], False)
        between = full[len(prompt):full.rindex(a)] if full.startswith(prompt) else None
        closed = prompt[prompt.rindex(q) + len(q):].strip() != ""  # something after the question ends its turn
        if closed and between is not None and not between.strip():
            self.reply_prefix = between
        elif prompt == self._apply([{"role": "user", "content": q}], False):
            raise PromptError(f"the chat template of {source} adds no generation prompt "
                              "(add_generation_prompt=True changes nothing) and the prompt does not end "
                              "where it puts an assistant turn, so the model would continue the user "
                              "turn; set prompt_format to a named format or fix the template")
        terminator = self._assistant_terminator().strip()
        first = self.encode(terminator)[:1] if terminator else []
        turn_end = [i for i in first if i in _special_ids(tokenizer)]
        self.stop_token_ids = sorted(set(turn_end + self._eos))
        self.stop = [OUTPUT_FENCE] + ([terminator] if terminator and not turn_end else [])
        self._obs_wrap = self._observation_wrap()

    def _apply(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=generation_prompt)

    def _assistant_terminator(self) -> str:
        """What the template writes after an assistant turn's content."""
        marker = "A7q"
        text = self._apply([{"role": "user", "content": "Q"},
                            {"role": "assistant", "content": marker}], False)
        return text[text.rindex(marker) + len(marker):]

    def _observation_wrap(self) -> tuple[str, str]:
        """(before, after) an observation, from the end of an assistant turn to the next
        generation header."""
        a, o = "A7q", "O7q"
        text = self._apply([{"role": "user", "content": "Q"}, {"role": "assistant", "content": a},
                            {"role": "user", "content": o}], True)
        tail = text[text.rindex(a) + len(a):]
        before, _, after = tail.partition(o)
        return before, after

    def render(self, messages: list[dict]) -> str:
        return self._apply(messages, True)

    def continuation(self, observation: str) -> str:
        before, after = self._obs_wrap
        return before + observation + after


class LiteralFormat(PromptFormat):
    """One of the reference's formats, string for string (SPEC 1.2)."""

    def __init__(self, name: str, tokenizer, eos_token_ids: list[int] | None = None):
        super().__init__(tokenizer, eos_token_ids)
        self.name, self.spec = name, _LITERALS[name]
        self.stop = list(self.spec.stop)
        vocab, special = tokenizer.get_vocab(), _special_ids(tokenizer)
        ids = [vocab[t] for t in self.stop if vocab.get(t) in special]
        self.stop_token_ids = sorted(set(ids + self._eos))

    def user_content(self, question: str) -> str:
        return f"{question}\n{TOOL_INSTRUCTION}" if self.spec.instruction else question

    def render(self, messages: list[dict]) -> str:
        s = self.spec
        parts = [s.head, messages[0]["content"], s.first_to_assistant]
        for m in messages[1:]:
            if m["role"] == "assistant":
                parts.append(m["content"])
            else:
                parts += [s.assistant_to_user, m["content"], s.user_to_assistant]
        return "".join(parts)

    def continuation(self, observation: str) -> str:
        return self.spec.assistant_to_user + observation + self.spec.user_to_assistant

    def encode(self, text: str) -> list[int]:
        ids = super().encode(text)
        bos = self.tokenizer.bos_token_id
        # deepseek's literal has no BOS of its own; the others start with theirs.
        if bos is not None and ids[:1] != [bos]:
            ids.insert(0, bos)
        return ids


def make_format(name: str, tokenizer, eos_token_ids: list[int] | None = None,
                source: str = "model") -> PromptFormat:
    if name == "chat_template":
        return ChatTemplateFormat(tokenizer, eos_token_ids, source)
    if name in _LITERALS:
        return LiteralFormat(name, tokenizer, eos_token_ids)
    raise PromptError(f"unknown prompt_format {name!r}; expected one of {list(FORMATS)}")
