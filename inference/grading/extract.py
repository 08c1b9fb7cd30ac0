"""Answer extraction and normalisation, compatible with the reference (SPEC 3.1-3.3).

The paper's numbers depend on these exact string rules (ToRA's parser, used unchanged by the
official code), oddities included: `3\\cdot 4` becomes `34`, every `and` is deleted. They are kept
on purpose so that the `paper` grader sees the same strings as the reference; the `strict` grader
works from the raw answer (`extract_raw_answer`) instead.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"-?\d*\.?\d+")
_UNIT_AT_END = re.compile(r"\\text{.*?}$")
_MBOX = re.compile(r"\\mbox{.*?}")
_SQRT_BARE = re.compile(r"\\sqrt(\w+)")
_ZEROS_INSIDE = re.compile(r"(\d+)\.0+([^\d])")
_ZEROS_AT_END = re.compile(r"(\d+)\.0+$")

# SPEC 3.2 rules 3-6 and 8-11: plain substring deletions and rewrites, in the reference's order.
_BEFORE_UNITS = (("\\!", ""), ("\\ ", ""), ("\\\\", "\\"), ("\\\\", "\\"),
                 ("tfrac", "frac"), ("dfrac", "frac"), ("\\left", ""), ("\\right", ""))
_AFTER_UNITS = (("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", ""), ("\\text", ""),
                ("x\\in", ""), ("\\%", ""), ("%", ""), (" .", " 0."), ("{.", "{0."), ("\\cdot", ""))


def _fix_fracs(s: str) -> str:
    """`\\frac12` -> `\\frac{1}{2}`, `\\frac1{72}` -> `\\frac{1}{72}`; a `\\frac` followed by
    fewer than two characters leaves the whole string unchanged (the reference gives up)."""
    head, *tails = s.split("\\frac")
    out = [head]
    for tail in tails:
        if tail.startswith("{"):
            out.append("\\frac" + tail)
            continue
        if len(tail) < 2:
            return s
        num, den, rest = tail[0], tail[1], tail[2:]
        den = den if den == "{" else "{" + den + "}"
        out.append("\\frac{" + num + "}" + den + rest)
    return "".join(out)


def _fix_a_slash_b(s: str) -> str:
    """`a/b` with integer sides (or sides containing `sqrt`) -> `\\frac{a}{b}`, only when the
    integers print back exactly (`01/2` and `1.5/2` stay as they are)."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    sides = []
    for side in parts:
        if "sqrt" in side:
            sides.append(side)
            continue
        try:
            sides.append(str(int(side)))
        except ValueError:
            return s
    if "/".join(sides) != s:
        return s
    return "\\frac{" + sides[0] + "}{" + sides[1] + "}"


def strip_string(s: str) -> str:
    """The reference's normalisation (SPEC 3.2), rule for rule and in the same order."""
    s = str(s).strip().replace("\n", "").rstrip(".")
    for old, new in _BEFORE_UNITS:
        s = s.replace(old, new)
    without_unit = _UNIT_AT_END.sub("", s).strip()
    if without_unit:
        s = without_unit
    for old, new in _AFTER_UNITS:
        s = s.replace(old, new)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = _MBOX.sub("", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = _ZEROS_INSIDE.sub(r"\1\2", s)
    s = _ZEROS_AT_END.sub(r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _SQRT_BARE.sub(r"\\sqrt{\1}", s).replace(" ", "")
    return _fix_a_slash_b(_fix_fracs(s))


def _braced(text: str) -> str:
    """Content of the brace group `text` opens with; an unclosed group runs to the end."""
    depth, out = 1, []
    for ch in text[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        out.append(ch)
    return "".join(out)


def extract_program_output(text: str) -> str:
    """The content of the last ```` ```output ```` block (up to the next fence), stripped."""
    if "```output" not in text:
        return ""
    return text.split("```output")[-1].split("```")[0].strip()


def extract_raw_answer(text: str) -> str:
    """SPEC 3.1 with its post-processing but before `strip_string`: what the strict grader reads,
    since `strip_string` loses meaning (`\\%`, `\\cdot`, `and`, units)."""
    if "boxed" in text:
        after = text.split("boxed")[-1]
        if not after:
            return ""
        ans = _braced(after) if after[0] == "{" else after.split("$")[0].strip()
    elif "he answer is" in text:
        ans = text.split("he answer is")[-1].strip()
    elif (output := extract_program_output(text)) != "":
        ans = output
    else:
        numbers = _NUMBER.findall(text.replace(",", ""))
        ans = numbers[-1] if numbers else ""
    ans = ans.split("\n")[0]
    if ans.startswith(":"):
        ans = ans[1:]
    if ans.endswith("."):
        ans = ans[:-1]
    if ans.endswith("/"):
        ans = ans[:-1]
    return ans


def extract_answer(text: str) -> str:
    """The final answer of a model turn, normalised as the reference does (SPEC 3.1)."""
    return strip_string(extract_raw_answer(text))


def parse_ground_truth(example: dict, data_name: str) -> tuple[str, str]:
    """(gt_cot, gt) as the reference computes them (SPEC 3.3).

    Rows that already carry `gt_cot` (the paper's RLHF4MATH/prompt_iter sets, our own runs) are
    taken as they are; MATH (`math`, `ocw`) reads the last `\\boxed{}` of `solution`; GSM8K
    (`gsm8k`, also the tiny world) splits `answer` on `####`. Rows with a `gt` but no recognised
    source are accepted too, with an empty gt_cot.
    """
    if "gt_cot" in example:
        return example["gt_cot"], strip_string(example["gt"])
    if data_name in ("math", "ocw"):
        _require(example, "solution", data_name)
        gt_cot = example["solution"]
        gt = extract_answer(gt_cot)
    elif data_name == "gsm8k":
        _require(example, "answer", data_name)
        parts = str(example["answer"]).split("####")
        if len(parts) != 2:
            raise ValueError(f"gsm8k: field 'answer' must contain '####' exactly once, "
                             f"found {len(parts) - 1}")
        gt_cot, gt = parts
    elif "gt" in example:
        gt_cot, gt = "", example["gt"]
    else:
        raise ValueError(f"cannot find the ground truth of a {data_name!r} row (keys: "
                         f"{sorted(example)}); use data_name gsm8k or math, or give 'gt'")
    return str(gt_cot).strip(), strip_string(gt)


def raw_ground_truth(gt: str, gt_cot: str | None) -> str:
    """The ground truth before `strip_string`, recovered from a MATH-style `gt_cot` when its last
    `\\boxed{}` normalises to `gt`; otherwise `gt` itself (GSM8K answers are plain numbers)."""
    if gt_cot and "boxed" in gt_cot:
        raw = extract_raw_answer(gt_cot)
        if strip_string(strip_string(raw)) == gt or strip_string(raw) == gt:
            return raw
    return gt


def parse_question(example: dict, data_name: str) -> str:
    """The first of question / problem / Question / input, stripped (SPEC 3.3)."""
    for key in ("question", "problem", "Question", "input"):
        if key in example:
            question = str(example[key]).strip()
            if not question:
                raise ValueError(f"{data_name}: field '{key}' is empty")
            return question
    raise ValueError(f"{data_name}: no question field (question, problem, Question or input); "
                     f"keys: {sorted(example)}")


def _require(example: dict, key: str, data_name: str) -> None:
    if key not in example:
        raise ValueError(f"{data_name}: missing field '{key}' (keys: {sorted(example)})")
