"""Metrics of one graded run: accuracy overall, per MATH subject and level, per sampling column,
pass@k, timeouts, empty predictions, turns, tool errors, and where the graders disagree."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from math import comb
from statistics import mean

# An observation turn shows an error when a line starts a traceback or names an error, as the
# reference's executor reports them (`NameError: ...`, `Execution error: ...`, `Timeout Error`).
_TOOL_ERROR = re.compile(
    r"^\s*(?:Traceback \(most recent call last\)|[\w.]*(?:Error|Exception)\b\s*:?"
    r"|(?:Execution|Syntax|Undefined|Timeout) [Ee]rror|There exists some error in your code)",
    re.MULTILINE)
_TIMED_OUT = re.compile(r"timed out|Timeout Error", re.IGNORECASE)


def is_tool_error(observation: str) -> bool:
    return bool(_TOOL_ERROR.search(observation) or _TIMED_OUT.search(observation))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of P(at least one of k samples is correct) from n samples, c correct."""
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def _pct(values: list[bool]) -> float:
    return 100.0 * sum(values) / len(values) if values else 0.0


def _ks(max_n: int, asked: list[int]) -> list[int]:
    if asked:
        return sorted(k for k in set(asked) if 1 <= k <= max_n)
    ks = {1, max_n}
    k = 2
    while k < max_n:
        ks.add(k)
        k *= 2
    return sorted(ks)


def compute(rows: list[dict], graders: list[str], headline: str, pass_k: list[int]) -> dict:
    """`rows`: one per graded trajectory, {id, idx, sample, pred, gt, scores, timeouts, turns,
    messages, stop_reason, extra, generator_pred, pred_raw, gt_raw}. Accuracies are in %."""
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_problem[r["idx"]].append(r)
    max_n = max((len(v) for v in by_problem.values()), default=0)
    out: dict = {
        "graders": graders, "headline": headline, "n_scored": len(rows), "n_problems": len(by_problem),
        "samples_per_problem": dict(sorted(Counter(len(v) for v in by_problem.values()).items())),
        "accuracy": {g: _pct([r["scores"][g] for r in rows]) for g in graders},
        "pass@1_by_sample": {}, "pass@k": {}, "by_subject": {}, "by_level": {}, "by_source": {},
        "timeouts": {g: sum(g in r["timeouts"] for r in rows) for g in graders},
        "empty_predictions": sum(not r["pred"] for r in rows),
        "pred_differs_from_generator": sum(r["pred"] != r["generator_pred"] for r in rows),
        "mean_turns": mean(r["turns"] for r in rows) if rows else 0.0,
        "stop_reasons": dict(Counter(r["stop_reason"] for r in rows).most_common()),
    }
    ks = _ks(max_n, pass_k)
    for g in graders:
        columns: dict[int, list[bool]] = defaultdict(list)
        for r in rows:
            columns[r["sample"]].append(r["scores"][g])
        out["pass@1_by_sample"][g] = {str(s): _pct(v) for s, v in sorted(columns.items())}
        out["pass@k"][g] = {}
        for k in ks:
            per_problem = [pass_at_k(len(v), sum(x["scores"][g] for x in v), k)
                           for v in by_problem.values() if len(v) >= k]
            out["pass@k"][g][str(k)] = 100.0 * mean(per_problem) if per_problem else 0.0
        for key, name in (("type", "by_subject"), ("level", "by_level")):
            groups: dict[str, list[bool]] = defaultdict(list)
            for r in rows:
                value = (r.get("extra") or {}).get(key)
                if value is not None:
                    groups[str(value)].append(r["scores"][g])
            if groups:
                out[name][g] = {k: {"n": len(v), "accuracy": _pct(v)} for k, v in sorted(groups.items())}
        sources: dict[str, list[bool]] = defaultdict(list)
        for r in rows:
            if r.get("source"):
                sources[r["source"]].append(r["scores"][g])
        if sources:
            out["by_source"][g] = {k: {"n": len(v), "accuracy": _pct(v)} for k, v in sorted(sources.items())}
    observations = [m["content"] for r in rows for m in r["messages"][1:] if m["role"] == "user"]
    out["observation_turns"] = len(observations)
    out["tool_error_rate"] = _pct([is_tool_error(o) for o in observations])
    out["disagreements"] = [
        {"id": r["id"], "pred": r["pred"], "gt": r["gt"], "pred_raw": r["pred_raw"], "gt_raw": r["gt_raw"],
         **{g: r["scores"][g] for g in graders}}
        for r in rows if len({r["scores"][g] for g in graders}) > 1]
    out["pred_differences"] = [
        {"id": r["id"], "generator": r["generator_pred"], "re_extracted": r["pred"]}
        for r in rows if r["pred"] != r["generator_pred"]]
    return out
