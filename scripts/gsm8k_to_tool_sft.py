"""GSM8K training answers -> tool-integrated SFT trajectories (formats/sft.py), run for real.

GSM8K writes each computation of a solution as a calculator annotation, `48/2 = <<48/2=24>>24`.
Each solution line that has annotations becomes one assistant turn: the line as a plan (the
annotation and its result taken out: "Natalia sold 48/2 clips in May."), then a ```python block
printing each annotated expression; the program runs in the real sandbox (inference/sandbox, the
one generation uses) and its output comes back as the user turn "```output\\n...\\n```". Lines with
no annotation join the next turn's text. The last turn states the last line and boxes the `####`
answer. So the model learns to write a program, read its output (`24.0` where Python prints a
float) and carry the numbers on, on real problems and real tool output.

A solution is dropped (and counted by reason) when a program's output is not the annotated value
(GSM8K has some wrong or non-Python annotations, e.g. `%`), or when it needs more code turns than
the loop allows (H=6: at most 5 programs before the answer).

Runs in the inference environment (the sandbox):
    .venv-inference/bin/python scripts/gsm8k_to_tool_sft.py --data inference/data/gsm8k/train.jsonl \\
        --start 1000 --limit 400 --out runs/smollm2_data/sft.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from formats import sft  # noqa: E402
from inference.prompts import observation_content  # noqa: E402
from inference.sandbox import Sandbox, SandboxConfig  # noqa: E402

ANNOTATION = re.compile(r"<<([^<>]*)=([^<>=]*)>>")
# "= <<e=v>>v" (the usual form) or "<<e=v>>v" alone, with an optional "$" before the annotation
_WITH_RESULT = re.compile(r"\s*(=\s*)?(\$?)<<([^<>]*)=([^<>=]*)>>")
MAX_PROGRAMS = 5  # H=6 turns (paper), the last one answers


def plan(line: str) -> str:
    """The line before its results are known: "x = <<e=v>>v" -> "x", a bare "<<e=v>>v" -> "e"."""
    out, pos = [], 0
    for m in _WITH_RESULT.finditer(line):
        out.append(line[pos:m.start()])
        end = m.end()
        value = m.group(4)
        if line.startswith(value, end):
            end += len(value)
        out.append("" if m.group(1) else f" {m.group(3)}")
        pos = end
    out.append(line[pos:])
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r" {2,}", " ", "".join(out))).strip()


def stated(line: str) -> str:
    """The line as a reader sees it: annotations removed, results kept."""
    return ANNOTATION.sub("", line).strip()


def _number(text: str) -> float | None:
    try:
        return float(text.strip().replace(",", "").rstrip("."))
    except ValueError:
        return None


def same_values(output: str, expected: list[str]) -> bool:
    """Each printed line is the annotated value, numerically."""
    lines = output.strip().split("\n")
    if len(lines) != len(expected):
        return False
    for got, want in zip(lines, expected, strict=True):
        a, b = _number(got), _number(want)
        if a is None or b is None or not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6):
            return False
    return True


def steps(answer: str) -> tuple[list[tuple[str, list[tuple[str, str]]]], str, str]:
    """(text, [(expression, value)]) per code turn, the closing text, and the `####` answer."""
    work, _, final = answer.rpartition("####")
    turns, pending = [], []
    for line in (x.strip() for x in work.strip().split("\n")):
        if not line:
            continue
        found = ANNOTATION.findall(line)
        if found:
            turns.append((" ".join([*pending, plan(line)]), [(e.strip(), v.strip()) for e, v in found],
                          stated(line)))
            pending = []
        else:
            pending.append(line)
    closing = turns[-1][2] if turns else ""
    tail = " ".join(pending)
    return [(t, c) for t, c, _ in turns], (f"{closing} {tail}" if tail else closing).strip(), final.strip()


def convert(question: str, answer: str, sandbox: Sandbox) -> tuple[dict | None, str]:
    """One SFT record and "ok", or None and why it was dropped."""
    turns, closing, final = steps(answer)
    if not turns:
        return None, "no_annotation"
    if len(turns) > MAX_PROGRAMS:
        return None, "too_many_turns"
    messages = [{"role": "user", "content": question}]
    with sandbox.session() as session:
        for text, calls in turns:
            program = "\n".join(f"print({expr})" for expr, _ in calls)
            obs = session.run(program)
            if obs.status != "ok" or not same_values(obs.text, [v for _, v in calls]):
                return None, "output_differs"
            messages += [{"role": "assistant", "content": f"{text}\n```python\n{program}\n```"},
                         {"role": "user", "content": observation_content(obs.text)}]
    messages.append({"role": "assistant", "content": f"{closing}\nThe answer is $\\boxed{{{final}}}$."})
    record = {"messages": messages}
    sft.validate(record, "<converted>")
    return record, "ok"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="inference/data/gsm8k/train.jsonl", help="GSM8K JSONL (question, answer)")
    ap.add_argument("--start", type=int, default=0, help="first row used (keep SFT rows apart from the prompts)")
    ap.add_argument("--limit", type=int, default=400, help="trajectories to write")
    ap.add_argument("--out", type=Path, required=True, help="SFT JSONL to write")
    args = ap.parse_args(argv)
    counts: Counter = Counter()
    lines = Path(args.data).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()][args.start:]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".part")
    with Sandbox(SandboxConfig()) as sandbox, open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            if counts["ok"] >= args.limit:
                break
            record, why = convert(row["question"], row["answer"], sandbox)
            counts[why] += 1
            if record:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    tmp.replace(args.out)
    stats = {"data": args.data, "start": args.start, "rows_read": sum(counts.values()), **counts}
    args.out.with_suffix(".stats.json").write_text(json.dumps(stats, indent=1) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
