"""Grade generation runs: per-trajectory scores, metrics JSON and a Markdown report per run.

    python -m inference.evaluate --config inference/configs/evaluate.yaml run1.jsonl run2.jsonl
    python -m inference.evaluate files='[run.jsonl]' headline=strict

For each `<run>.jsonl` (formats/trajectory.py) it writes beside it `<run>.scores.jsonl`
(formats/scores.py, both graders on every line), `<run>.metrics.json` and `<run>.report.md`.
The prediction is re-extracted from the last assistant message with this version's rules (the
report lists where it differs from the generator's). Re-running skips ids already scored with the
same grader versions; lines from other versions are re-graded.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from formats import scores as scores_format
from formats import trajectory as trajectory_format
from formats._common import FormatError, append_jsonl
from formats.config import parse_cli
from inference.grading import (
    GRADERS,
    VERSIONS,
    GradingPool,
    Pair,
    extract_raw_answer,
    grader_version,
    raw_ground_truth,
    strip_string,
)
from inference.grading import metrics as metrics_mod
from inference.grading import report as report_mod


@dataclass
class EvaluateConfig:
    files: list[str] = field(default_factory=list, metadata={
        "help": "generation JSONL files (formats/trajectory.py); also accepted as positional arguments"})
    headline: str = field(default="paper", metadata={
        "help": "grader of the headline numbers: 'paper' (the official grader's decisions, comparable "
                "with the paper) or 'strict' (mathematically exact); both are always graded"})
    extra_graders: list[str] = field(default_factory=list, metadata={
        "help": "more graders to run beside paper and strict, e.g. [math_verify] (a baseline)"})
    timeout_s: float = field(default=10.0, metadata={
        "help": "time limit per grading call, s; a timeout scores False and is counted (SPEC 3.5: 10 s)"})
    workers: int = field(default=0, metadata={"help": "grading processes; 0 = one per CPU core"})
    memory_mb: int = field(default=4096, metadata={"help": "address-space limit per grading process, MiB"})
    pass_k: list[int] = field(default_factory=list, metadata={
        "help": "k values for pass@k; [] = 1, 2, 4, ... up to the samples per problem"})
    chunk: int = field(default=256, metadata={"help": "trajectories graded between two writes"})
    skip_bad_lines: bool = field(default=False, metadata={
        "help": "skip unreadable lines of a run (counted in the report) instead of stopping"})
    max_listed: int = field(default=50, metadata={"help": "disagreements listed in the Markdown report"})

    def graders(self) -> list[str]:
        return list(dict.fromkeys([*GRADERS, *self.extra_graders]))


def output_paths(run: str | Path) -> dict[str, Path]:
    run = Path(run)
    stem = run.name.removesuffix(".jsonl")
    return {k: run.with_name(f"{stem}.{k}") for k in ("scores.jsonl", "metrics.json", "report.md")}


def _last_assistant(messages: list[dict]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), "")


def _pair(traj: dict) -> Pair:
    raw = extract_raw_answer(_last_assistant(traj["messages"]))
    return Pair(strip_string(raw), traj["gt"], raw, raw_ground_truth(traj["gt"], traj.get("gt_cot")))


def _load_scores(path: Path, version: str, ids: set[str]) -> dict[str, dict]:
    """Valid records of this grader version; the file is rewritten without the others (a torn
    last line, other versions, ids no longer in the run) so that appending stays clean."""
    if not path.exists():
        return {}
    bad: list[int] = []
    kept, dropped = {}, 0
    for rec in scores_format.read(str(path), skip_bad_lines=True, bad_lines=bad):
        if rec["grader_version"] == version and rec["id"] in ids:
            kept[rec["id"]] = rec
        else:
            dropped += 1
    if bad or dropped or len(kept) != sum(1 for line in path.open(encoding="utf-8") if line.strip()):
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for rec in kept.values():
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        print(f"{path}: kept {len(kept)} scores, dropped {dropped + len(bad)} (other grader version, "
              "unknown id or unreadable)", file=sys.stderr)
    return kept


def evaluate_file(run: str, cfg: EvaluateConfig, pool: GradingPool) -> dict:
    graders = cfg.graders()
    version = grader_version(graders)
    paths = output_paths(run)
    bad_lines: list[int] = []
    trajs = list(trajectory_format.read(run, skip_bad_lines=cfg.skip_bad_lines, bad_lines=bad_lines))
    seen: set[str] = set()
    for t in trajs:
        if t["id"] in seen:
            raise FormatError(run, None, "id", f"{t['id']!r} appears twice")
        seen.add(t["id"])
    scored = _load_scores(paths["scores.jsonl"], version, seen)
    no_gt = [t for t in trajs if not t["gt"]]
    todo = [t for t in trajs if t["gt"] and t["id"] not in scored]
    bar = tqdm(total=len(todo), desc=f"grading {Path(run).name}", unit="traj", disable=not todo)
    with paths["scores.jsonl"].open("a", encoding="utf-8") as fh:
        for start in range(0, len(todo), cfg.chunk):
            batch = todo[start:start + cfg.chunk]
            pairs = [_pair(t) for t in batch]
            for t, pair, grade in zip(batch, pairs, pool.grade_many(pairs, graders=graders), strict=True):
                rec = {"id": t["id"], "idx": t["idx"], "sample": t["sample"], "pred": pair.pred,
                       "gt": pair.gt, "scores": grade.scores, "timeouts": grade.timeouts,
                       "grader_version": version, "format_version": scores_format.FORMAT_VERSION}
                append_jsonl(fh, rec)
                scored[t["id"]] = rec
            bar.update(len(batch))
    bar.close()
    rows = []
    for t in trajs:
        if t["id"] not in scored:
            continue
        pair = _pair(t)
        rows.append({**scored[t["id"]], "turns": t["turns"], "messages": t["messages"],
                     "stop_reason": t["stop_reason"], "extra": t.get("extra"), "source": t.get("source"),
                     "generator_pred": t["pred"], "pred_raw": pair.pred_raw, "gt_raw": pair.gt_raw})
    m = metrics_mod.compute(rows, graders, cfg.headline, cfg.pass_k)
    m.update(file=str(run), grader_version=version, no_gt=len(no_gt), bad_lines=bad_lines,
             timeout_s=cfg.timeout_s)
    paths["metrics.json"].write_text(json.dumps(m, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["report.md"].write_text(report_mod.render(str(run), m, cfg.max_listed), encoding="utf-8")
    return m


def _split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """Positional run files apart from `--config FILE` and `key=value` overrides."""
    rest, files, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--config", "-c") and i + 1 < len(argv):
            rest += argv[i:i + 2]
            i += 2
            continue
        (rest if arg.startswith("-") or "=" in arg else files).append(arg)
        i += 1
    return rest, files


def main(argv: list[str] | None = None) -> list[dict]:
    rest, files = _split_argv(sys.argv[1:] if argv is None else argv)
    cfg = parse_cli(EvaluateConfig, rest, description=__doc__)
    cfg.files = [*cfg.files, *files]
    if not cfg.files:
        sys.exit("error: no run files given (positional, or files=[...])")
    unknown = [g for g in [cfg.headline, *cfg.extra_graders] if g not in VERSIONS]
    if unknown or cfg.headline not in GRADERS:
        sys.exit(f"error: headline must be one of {list(GRADERS)} and extra_graders of {sorted(VERSIONS)}; "
                 f"got {cfg.headline!r}, {cfg.extra_graders}")
    missing = [f for f in cfg.files if not Path(f).is_file()]
    if missing:
        sys.exit(f"error: no such run file: {', '.join(missing)}")
    results = []
    with GradingPool(cfg.graders(), timeout_s=cfg.timeout_s, workers=cfg.workers or None,
                     memory_mb=cfg.memory_mb) as pool:
        for run in cfg.files:
            try:
                m = evaluate_file(run, cfg, pool)
            except FormatError as exc:
                sys.exit(f"error: {exc}")
            acc = ", ".join(f"{g} {m['accuracy'][g]:.2f}%" for g in m["graders"])
            print(f"{run}: {m['n_scored']} graded; {acc}; timeouts {m['timeouts']}; "
                  f"{len(m['disagreements'])} disagreements -> {output_paths(run)['report.md']}")
            results.append(m)
    return results


if __name__ == "__main__":
    main()
