"""A grading worker process: JSON lines in on stdin, one JSON line out per decision.

Started by `GradingPool` with `python -m inference.grading.worker`, never imported by callers.
Grading runs in this process's main thread with no signal-based timeout; the pool enforces the
time limit from outside by killing the process, which works whatever thread the caller is in.

Protocol: the worker first writes `{"ready": true}`; then each input line is a list of tasks
`[id, grader, pred, gt, pred_raw, gt_raw]` and each task gets one output line
`[id, decision, error-or-null]`.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import warnings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--memory-mb", type=int, default=0, help="address-space limit (0: none)")
    args = ap.parse_args()
    if args.memory_mb > 0:
        limit = args.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    warnings.filterwarnings("ignore")
    sys.setrecursionlimit(10_000)
    from .graders import Pair, grade_now

    for grader in ("paper", "strict"):  # import and warm the parsers before saying ready
        grade_now(Pair("\\frac{1}{2}", "0.5", "\\frac{1}{2}", "0.5"), grader)
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        for task_id, grader, pred, gt, pred_raw, gt_raw in json.loads(line):
            try:
                decision, error = grade_now(Pair(pred, gt, pred_raw, gt_raw), grader), None
            except Exception as exc:  # noqa: BLE001 - reported to the pool, scored False
                decision, error = False, f"{type(exc).__name__}: {exc}"[:500]
            out.write(json.dumps([task_id, bool(decision), error]) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
