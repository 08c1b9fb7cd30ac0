"""Which graded trajectories may enter preference data, and a report of what each rule removed.

The reference has four overlapping filter tools with inconsistent rules (SPEC §4.3-4.5, §8.27).
Here the paper's recipe is the default (SPEC §4.3 rules 1, 2, 5, 6, plus the paper's annotation
filter: a "correct" trajectory whose last observation shows an error is dropped, FIELD.md §4
"Recipe"), and every other rule of those tools is a named switch, off by default.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property

from tqdm import tqdm

from formats.trajectory import MAX_CALLS_MARKER

# Stop reasons of a trajectory cut by a length cap (512 per turn, 2048 per trajectory, the context).
LENGTH_CAPS = ("max_tokens", "context")


@dataclass
class Candidate:
    """A graded trajectory as the filters and the pair builder see it."""

    id: str
    idx: str
    sample: int
    run: int  # position of its run in the config: the order that decides ties and dedup
    source: str
    gt: str
    pred: str
    stop_reason: str
    correct: bool
    messages: list[dict]
    n_prompt: int  # messages before the first assistant turn
    where: str  # "file, line N", for errors
    n_tokens: int | None = None

    @property
    def prompt(self) -> list[dict]:
        return self.messages[: self.n_prompt]

    @property
    def completion(self) -> list[dict]:
        return self.messages[self.n_prompt:]

    # Cached: every rule reads them, over hundreds of thousands of trajectories.
    @cached_property
    def observations(self) -> tuple[str, ...]:
        return tuple(m["content"] for m in self.completion if m["role"] == "user")

    @cached_property
    def last_observation(self) -> str:
        """The last observation turn (the reference's `messages[-2]`); "" without a tool call."""
        return self.observations[-1] if self.observations else ""

    @cached_property
    def contents(self) -> tuple[str, ...]:
        return tuple(m["content"] for m in self.messages)

    @cached_property
    def contents_lower(self) -> tuple[str, ...]:
        return tuple(t.lower() for t in self.contents)

    @cached_property
    def joined(self) -> tuple[str, str]:
        """All contents in one string (as is, lower-cased): one search rejects most trajectories."""
        return "\0".join(self.contents), "\0".join(self.contents_lower)


@dataclass
class FilterConfig:
    """One switch per rule; booleans drop what the rule matches, a threshold of 0 is off."""

    # The paper's recipe (defaults on).
    failed_generation: bool = field(default=True, metadata={"help": (
        "drop trajectories the generator marked failed (stop_reason 'failed'); the reference "
        "crashed instead of recording them (SPEC 8.18)")})
    require_tool_call: bool = field(default=True, metadata={"help": (
        "drop trajectories without any tool call (SPEC 4.3 rule 1: fewer than 4 messages)")})
    code_in_every_turn: bool = field(default=True, metadata={"help": (
        "drop if an assistant turn other than the last lacks 'python' (SPEC 4.3 rule 5)")})
    environment_error: bool = field(default=True, metadata={"help": (
        "drop if a message holds both 'ipython' and 'error', an environment failure "
        "(SPEC 4.3 rule 6)")})
    correct_error_in_last_observation: bool = field(default=True, metadata={"help": (
        "drop a correct trajectory whose last observation contains 'error' "
        "(paper's annotation filter, FIELD.md 4 'Recipe'; SPEC 4.4 step 5)")})
    # Rules of the reference's other tools (defaults off).
    error_in_last_observation: bool = field(default=False, metadata={"help": (
        "drop ANY trajectory whose last observation contains 'error' (get_dpo_dataset.py, "
        "SPEC 4.3 rule 3: also removes incorrect ones)")})
    boxed_after_error: bool = field(default=False, metadata={"help": (
        "drop if the last turn has 'boxed' and the last observation 'error' (SPEC 4.3 rule 4, "
        "4.4 step 3, 4.5)")})
    empty_execution_error: bool = field(default=False, metadata={"help": (
        "drop if a message is exactly '```output\\nExecution error: \\n```' (SPEC 4.4 step 3)")})
    empty_list_output: bool = field(default=False, metadata={"help": (
        "drop if a message contains '```output\\n[]' (SPEC 4.4 step 3, 4.5)")})
    correct_none_in_last_observation: bool = field(default=False, metadata={"help": (
        "drop a correct trajectory whose last observation contains 'none' (SPEC 4.4 step 6)")})
    traitlets_error: bool = field(default=False, metadata={"help": (
        "drop if a message has 'traitlets' and 'error' (SPEC 4.5)")})
    sympy_numbers_error: bool = field(default=False, metadata={"help": (
        "drop if a message has 'sympy.core.numbers' and 'error' (SPEC 4.5)")})
    sympy_tensor_error: bool = field(default=False, metadata={"help": (
        "drop if a message has 'sympy.tensor.tensor' and 'error', case-sensitive (SPEC 4.5)")})
    minlex_error: bool = field(default=False, metadata={"help": (
        "drop if a message has 'minlex() got an' (SPEC 4.5)")})
    missing_sympy_module: bool = field(default=False, metadata={"help": (
        "drop if a message has 'No module named' and 'sympy.' (SPEC 4.5)")})
    not_subscriptable: bool = field(default=False, metadata={"help": (
        "drop if a message has 'object is not subscriptable' (SPEC 4.5)")})
    max_turns: bool = field(default=False, metadata={"help": (
        "drop trajectories that hit the turn limit ('Reach max function call limit.'); "
        "kept by SPEC 4.3/4.4, dropped by 4.5")})
    correct_length_capped: bool = field(default=False, metadata={"help": (
        "drop a correct trajectory that a length cap stopped (stop_reason max_tokens or context: no "
        "\\boxed{}, its answer the last number of its cut-off turn). Kept by the reference, whose "
        "labels come from the score alone (SPEC 1.4, 4.3), so it may become a chosen example")})
    max_pred_chars: int = field(default=0, metadata={"help": (
        "drop if the prediction is longer than this many characters; 0 = off "
        "(SPEC 4.4 step 3 used 20)")})
    max_tokens: int = field(default=0, metadata={"help": (
        "drop if the chat-templated trajectory is longer than this many tokens of `tokenizer`; "
        "0 = off (SPEC 4.4 step 3 and 4.5 used 2048)")})


def _any_message(*needles: str, case: bool = False) -> Callable[[Candidate, FilterConfig], bool]:
    """A rule matching when one message contains every needle (case-insensitive unless `case`)."""
    if not case:
        needles = tuple(n.lower() for n in needles)

    def test(c: Candidate, _: FilterConfig) -> bool:
        joined, texts = (c.joined[0], c.contents) if case else (c.joined[1], c.contents_lower)
        if not all(n in joined for n in needles):
            return False
        return any(all(n in t for n in needles) for t in texts)

    return test


def _alternates(c: Candidate) -> bool:
    comp = c.completion
    return bool(comp) and len(comp) % 2 == 1 and all(
        m["role"] == ("assistant" if i % 2 == 0 else "user") for i, m in enumerate(comp))


def _hit_turn_limit(c: Candidate, _: FilterConfig) -> bool:
    return c.stop_reason == "max_turns" or c.messages[-1]["content"].strip() == MAX_CALLS_MARKER


def _code_missing(c: Candidate, _: FilterConfig) -> bool:
    turns = [m["content"] for m in c.completion if m["role"] == "assistant"]
    return any("python" not in t for t in turns[:-1])


def _too_many_tokens(c: Candidate, cfg: FilterConfig) -> bool:
    if c.n_tokens is None:
        raise RuntimeError("max_tokens is on but token lengths were not counted (count_tokens)")
    return c.n_tokens > cfg.max_tokens


@dataclass(frozen=True)
class Rule:
    name: str  # the FilterConfig switch; ALWAYS for the rule the output format imposes
    test: Callable[[Candidate, FilterConfig], bool]


ALWAYS = "ends_with_assistant"
# Order matters only for the report: a trajectory is charged to the first rule that drops it.
RULES = (
    Rule(ALWAYS, lambda c, _: not _alternates(c)),
    Rule("failed_generation", lambda c, _: c.stop_reason == "failed"),
    Rule("require_tool_call", lambda c, _: not c.observations),
    Rule("code_in_every_turn", _code_missing),
    Rule("environment_error", _any_message("ipython", "error")),
    Rule("correct_error_in_last_observation",
         lambda c, _: c.correct and "error" in c.last_observation.lower()),
    Rule("error_in_last_observation", lambda c, _: "error" in c.last_observation.lower()),
    Rule("boxed_after_error", lambda c, _: "boxed" in c.messages[-1]["content"]
         and "error" in c.last_observation.lower()),
    Rule("empty_execution_error",
         lambda c, _: "```output\nExecution error: \n```" in c.contents),
    Rule("empty_list_output", _any_message("```output\n[]")),
    Rule("correct_none_in_last_observation",
         lambda c, _: c.correct and "none" in c.last_observation.lower()),
    Rule("traitlets_error", _any_message("traitlets", "error")),
    Rule("sympy_numbers_error", _any_message("sympy.core.numbers", "error")),
    Rule("sympy_tensor_error", _any_message("sympy.tensor.tensor", "error", case=True)),
    Rule("minlex_error", _any_message("minlex() got an")),
    Rule("missing_sympy_module", _any_message("No module named", "sympy.")),
    Rule("not_subscriptable", _any_message("object is not subscriptable")),
    Rule("max_turns", _hit_turn_limit),
    Rule("correct_length_capped", lambda c, _: c.correct and c.stop_reason in LENGTH_CAPS),
    Rule("max_pred_chars", lambda c, cfg: len(c.pred) > cfg.max_pred_chars),
    Rule("max_tokens", _too_many_tokens),
)
THRESHOLDS = ("max_pred_chars", "max_tokens")
assert {r.name for r in RULES} - {ALWAYS} == {f.name for f in fields(FilterConfig)}


def _enabled(rule: Rule, cfg: FilterConfig) -> bool:
    return rule.name == ALWAYS or bool(getattr(cfg, rule.name))


def apply_filters(candidates: list[Candidate], cfg: FilterConfig) -> tuple[list[Candidate], dict]:
    """Keep what no enabled rule matches. The report gives, per rule, `removed` (charged to the
    first enabled rule that matches, so they sum to the total) and `matched` (on its own; also
    for switches that are off, to show what turning them on would do)."""
    report = {r.name: {"enabled": _enabled(r, cfg), "removed": 0, "matched": 0} for r in RULES}
    # A threshold rule that is off has no threshold to test against.
    evaluated = [r for r in RULES if r.name != ALWAYS and (r.name not in THRESHOLDS or _enabled(r, cfg))]
    for name in THRESHOLDS:
        if not report[name]["enabled"]:
            report[name]["matched"] = None
    kept = []
    for c in candidates:
        if not _alternates(c):  # later rules assume the completion's shape
            report[ALWAYS]["matched"] += 1
            report[ALWAYS]["removed"] += 1
            continue
        hits = [r.name for r in evaluated if r.test(c, cfg)]
        for name in hits:
            report[name]["matched"] += 1
        dropping = [n for n in hits if report[n]["enabled"]]
        if dropping:
            report[dropping[0]]["removed"] += 1
        else:
            kept.append(c)
    return kept, report


def count_tokens(candidates: list[Candidate], tokenizer_path: str, batch_size: int = 256) -> None:
    """Set `n_tokens`: the length of the whole conversation under the policy's chat template,
    as the reference measured it (`len(tokenizer.apply_chat_template(messages))`)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_path)
    bar = tqdm(total=len(candidates), desc="counting tokens", unit="traj")
    for start in range(0, len(candidates), batch_size):
        batch = candidates[start:start + batch_size]
        texts = [tok.apply_chat_template(c.messages, tokenize=False) for c in batch]
        ids = tok(texts, add_special_tokens=False)["input_ids"]
        for c, row in zip(batch, ids, strict=True):
            c.n_tokens = len(row)
        bar.update(len(batch))
    bar.close()


def format_report(report: dict, total: int) -> str:
    """A table for the terminal: rule, on/off, removed, matched."""
    lines = [f"filters: {total} trajectories in, "
             f"{total - sum(r['removed'] for r in report.values())} kept",
             f"  {'rule':36} {'on':3} {'removed':>8} {'matched':>8}"]
    for name, r in report.items():
        matched = "-" if r["matched"] is None else r["matched"]
        lines.append(f"  {name:36} {'yes' if r['enabled'] else 'no':3} {r['removed']:>8} {matched:>8}")
    return "\n".join(lines)

