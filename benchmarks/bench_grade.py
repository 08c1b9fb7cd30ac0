"""Grading throughput: pairs per second on 2 worker processes, paper and strict against plain
math-verify run through the same pool in the same process run.

    .venv-inference/bin/python benchmarks/bench_grade.py [--math inference/data/math/test.jsonl]

Sets: (1) all 5000 MATH ground truths against themselves (every grader should say equal);
(2) the mixed labelled sets of inference/tests/data (grader_labelled + grader_holdout), where the
accuracy against the labels is printed too.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from inference.grading import GradingPool, Pair, parse_ground_truth, raw_ground_truth, strip_string

ROOT = Path(__file__).resolve().parents[1]
GRADERS = ("paper", "strict", "math_verify")


def math_self_pairs(path: Path) -> list[Pair]:
    pairs = []
    for line in path.open(encoding="utf-8"):
        cot, gt = parse_ground_truth(json.loads(line), "math")
        raw = raw_ground_truth(gt, cot)
        pairs.append(Pair(gt, gt, raw, raw))
    return pairs


def labelled_pairs() -> tuple[list[Pair], list[bool]]:
    pairs, labels = [], []
    for name in ("grader_labelled.jsonl", "grader_holdout.jsonl"):
        for line in (ROOT / "inference" / "tests" / "data" / name).open(encoding="utf-8"):
            r = json.loads(line)
            pairs.append(Pair(strip_string(r["pred"]), strip_string(strip_string(r["gt"])), r["pred"], r["gt"]))
            labels.append(r["label"])
    return pairs, labels


def run(grader: str, pairs: list[Pair], workers: int, timeout_s: float) -> tuple[float, list]:
    with GradingPool((grader,), timeout_s=timeout_s, workers=workers) as pool:
        pool.grade_many(pairs[:workers * 4])  # start and warm the workers outside the clock
        start = time.perf_counter()
        grades = pool.grade_many(pairs)
        return time.perf_counter() - start, grades


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--math", type=Path, default=ROOT / "inference" / "data" / "math" / "test.jsonl")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout-s", type=float, default=10.0)
    args = ap.parse_args()
    sets = {}
    if args.math.exists():
        sets["MATH gt vs itself"] = (math_self_pairs(args.math), None)
    else:
        print(f"no MATH file at {args.math}: skipping the self-comparison set")
    sets["labelled (mixed)"] = labelled_pairs()
    rows = []
    for set_name, (pairs, labels) in sets.items():
        rate = {}
        for grader in GRADERS:
            seconds, grades = run(grader, pairs, args.workers, args.timeout_s)
            decisions = [g.scores[grader] for g in grades]
            timeouts = sum(bool(g.timeouts) for g in grades)
            if labels is None:
                quality = f"{sum(decisions)}/{len(pairs)} equal"
            else:
                right = sum(d is lab for d, lab in zip(decisions, labels, strict=True))
                quality = f"{100 * right / len(pairs):.1f}% right ({right}/{len(pairs)})"
            rate[grader] = len(pairs) / seconds
            rows.append((set_name, grader, len(pairs), seconds, rate[grader], quality, timeouts))
            print(f"{set_name:18s} {grader:12s} {len(pairs):5d} pairs {seconds:7.1f} s "
                  f"{rate[grader]:8.1f} pairs/s  {quality}  timeouts {timeouts}", flush=True)
        for grader in ("paper", "strict"):
            print(f"{set_name:18s} {grader} / math_verify throughput: {rate[grader] / rate['math_verify']:.2f}x")
    print("\n| set | grader | pairs | seconds | pairs/s | decisions | timeouts |\n|---|---|---|---|---|---|---|")
    for set_name, grader, n, seconds, r, quality, timeouts in rows:
        print(f"| {set_name} | {grader} | {n} | {seconds:.1f} | {r:.1f} | {quality} | {timeouts} |")


if __name__ == "__main__":
    main()
