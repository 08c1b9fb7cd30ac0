"""Preference data from graded generation runs: M-DPO pairs and M-KTO rows (SPEC §4, §8.22-27).

    python -m inference.pairs --config inference/configs/pairs.yaml output=runs/iter1/pairs \\
        'runs=[{path: gen_current.jsonl, source: current, max_samples_per_prompt: 20},
               {path: gen_previous.jsonl, source: previous, max_samples_per_prompt: 10}]'

Each run (formats/trajectory.py) is joined by `id` to its grading file `<run>.scores.jsonl`
(formats/scores.py); at most `max_samples_per_prompt` samples per prompt are taken from each run
(mixture sampling); the filters of inference/filters.py remove trajectories; the rest are grouped
by prompt, deduplicated, and paired with a seeded RNG. `<output>/dpo`, `<output>/kto` and
`<output>/stats.json` (formats/preference.py) appear together or not at all.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Literal

from datasets import Dataset, Features, List, Value
from tqdm import tqdm

from formats import FormatError, iter_jsonl, preference
from formats import scores as scores_format
from formats import trajectory as trajectory_format
from formats.config import ConfigError, parse_cli, to_dict
from inference.filters import LENGTH_CAPS, Candidate, FilterConfig, apply_filters, count_tokens, format_report


@dataclass
class RunSpec:
    path: str = field(metadata={"help": "generation JSONL (formats/trajectory.py)"})
    source: str = field(default="", metadata={"help": (
        "label of the model that produced the run, e.g. 'current' or 'previous'; "
        "default: the records' `source` field, else the file name")})
    max_samples_per_prompt: int = field(default=0, metadata={"help": (
        "take at most this many samples per prompt from this run (lowest sample numbers); 0 = all")})
    scores: str = field(default="", metadata={"help": "grading JSONL; default: <run>.scores.jsonl"})

    def scores_path(self) -> str:
        if self.scores:
            return self.scores
        path = Path(self.path)
        return str(path.with_name(path.name.removesuffix(".jsonl") + ".scores.jsonl"))


@dataclass
class PairsConfig:
    runs: list[RunSpec] = field(default_factory=list, metadata={"help": (
        "generation runs to mix, each {path, source (label; default: the records' source), "
        "max_samples_per_prompt (0 = all; lowest sample numbers first), scores (default: "
        "<run>.scores.jsonl)}; the paper took 20 samples per prompt from the current model and 10 "
        "from the previous one (FIELD.md 4 'Recipe')")})
    output: str = field(default="", metadata={"help": "output folder: dpo/, kto/, stats.json"})
    grader: str = field(default="paper", metadata={"help": (
        "which grader's decision labels the data: a key of `scores` ('paper' = the reference's "
        "math_equal, 'strict')")})
    grader_version: str = field(default="", metadata={"help": (
        "refuse scores from any other grader version; '' = any, but all files must agree")})
    filters: FilterConfig = field(default_factory=FilterConfig)
    tokenizer: str = field(default="", metadata={"help": (
        "the policy's tokenizer (path), needed by filters.max_tokens")})
    pairs_per_prompt: int = field(default=1, metadata={"help": (
        "pairs drawn per prompt: 1 = one random pair (the paper, SPEC 4.3); the paper's "
        "ablation used 3 and 8 (SPEC 4.4 step 8)")})
    dedup: Literal["trajectory", "first_turn"] = field(default="trajectory", metadata={"help": (
        "drop repeated trajectories of a prompt: 'trajectory' = identical whole completions; "
        "'first_turn' = same first assistant turn (the reference, SPEC 4.4 step 7)")})
    kto_from: Literal["pairs", "all"] = field(default="pairs", metadata={"help": (
        "M-KTO rows: 'pairs' = chosen and rejected of each pair (the reference, SPEC 4.7); "
        "'all' = every kept trajectory with its label")})
    seed: int = field(default=0, metadata={"help": "seed of the pair draw (the reference was unseeded)"})
    skip_bad_lines: bool = field(default=False, metadata={"help": (
        "skip and count bad input lines instead of stopping (also: --skip-bad-lines)")})
    push_to_hub: str = field(default="", metadata={"help": (
        "also push dpo and kto as configs of this Hub data set repo; '' = do not")})


def check_config(cfg: PairsConfig) -> None:
    if not cfg.runs:
        raise ConfigError("field 'runs': give at least one generation run")
    if not cfg.output:
        raise ConfigError("field 'output': required")
    if cfg.pairs_per_prompt < 1:
        raise ConfigError("field 'pairs_per_prompt': must be at least 1")
    paths = [str(Path(r.path).resolve()) for r in cfg.runs]
    if len(set(paths)) < len(paths):
        raise ConfigError("field 'runs': a run is listed twice")
    if any(r.max_samples_per_prompt < 0 for r in cfg.runs):
        raise ConfigError("field 'runs[].max_samples_per_prompt': must be 0 (all) or more")
    if cfg.filters.max_tokens > 0 and not cfg.tokenizer:
        raise ConfigError("field 'tokenizer': filters.max_tokens needs the policy's tokenizer")


class Problems:
    """Bad input lines: errors, or with `skip` recorded per file and skipped."""

    def __init__(self, skip: bool):
        self.skip = skip
        self.lines: dict[str, list[int]] = {}

    def of(self, path: str) -> list[int]:
        return self.lines.setdefault(str(path), [])

    def add(self, path: str, line: int, field_name: str, problem: str) -> None:
        if not self.skip:
            raise FormatError(path, line, field_name, problem)
        self.of(path).append(line)


def read_numbered(module: ModuleType, path: str, problems: Problems) -> Iterator[tuple[int, dict]]:
    """`module.read` with line numbers, which the join's errors need."""
    for line, obj in iter_jsonl(path, problems.skip, problems.of(path)):
        try:
            yield line, module.validate(obj, str(path), line)
        except FormatError as exc:
            problems.add(path, line, exc.field, exc.problem)


class Loader:
    """Reads runs and their scores, joined by id; one grader version across all files."""

    def __init__(self, cfg: PairsConfig, problems: Problems):
        self.cfg, self.problems = cfg, problems
        self.version: tuple[str, str, int] | None = None  # (version, file, line) first seen

    def _check_version(self, version: str, path: str, line: int) -> None:
        # Fatal even with skip_bad_lines: skipping would silently drop whole stale files.
        want = self.cfg.grader_version
        if want and version != want:
            raise FormatError(path, line, "grader_version", f"{version!r}, but the config expects "
                              f"{want!r}: re-grade this run or set grader_version")
        if self.version is None:
            self.version = (version, path, line)
        elif version != self.version[0]:
            first, first_path, first_line = self.version
            raise FormatError(path, line, "grader_version", f"{version!r}, but {first_path}, line "
                              f"{first_line} has {first!r}: grade every run with one grader version")

    def read_scores(self, path: str) -> dict[str, tuple[int, dict]]:
        found: dict[str, tuple[int, dict]] = {}
        for line, rec in tqdm(read_numbered(scores_format, path, self.problems),
                              desc=f"reading {path}", unit="score"):
            self._check_version(rec["grader_version"], path, line)
            if self.cfg.grader not in rec["scores"]:
                self.problems.add(path, line, f"scores.{self.cfg.grader}",
                                  f"no decision of grader {self.cfg.grader!r} (has {sorted(rec['scores'])})")
            elif rec["id"] in found:
                self.problems.add(path, line, "id", f"{rec['id']!r} repeats line {found[rec['id']][0]}")
            else:
                found[rec["id"]] = (line, rec)
        return found

    def load(self, spec: RunSpec, run: int) -> tuple[list[Candidate], dict]:
        """The run's graded trajectories, capped per prompt, and what was read."""
        path, scores_path = spec.path, spec.scores_path()
        for p in (path, scores_path):
            if not Path(p).is_file():
                raise FileNotFoundError(f"{p}: no such file (run {run} of the config)")
        scores = self.read_scores(scores_path)
        seen: dict[str, int] = {}
        candidates = []
        for line, rec in tqdm(read_numbered(trajectory_format, path, self.problems),
                              desc=f"reading {path}", unit="traj"):
            tid = rec["id"]
            if tid in seen:
                self.problems.add(path, line, "id", f"{tid!r} repeats line {seen[tid]}")
                continue
            seen[tid] = line
            hit = scores.pop(tid, None)
            if hit is None:
                self.problems.add(path, line, "id", f"{tid!r} has no score in {scores_path}")
                continue
            score_line, score = hit
            if (score["idx"], score["sample"]) != (rec["idx"], rec["sample"]):
                self.problems.add(scores_path, score_line, "idx", (
                    f"idx {score['idx']!r} sample {score['sample']} for {tid!r}, but {path}, line "
                    f"{line} has idx {rec['idx']!r} sample {rec['sample']}"))
                continue
            candidates.append(_candidate(rec, score["scores"][self.cfg.grader], spec, run, path, line))
        for tid, (score_line, _) in scores.items():
            self.problems.add(scores_path, score_line, "id", f"{tid!r} has no trajectory in {path}")
        used = cap_per_prompt(candidates, spec.max_samples_per_prompt)
        info = {"path": path, "scores": scores_path, "read": len(candidates), "used": len(used),
                "max_samples_per_prompt": spec.max_samples_per_prompt,
                "sources": dict(sorted(Counter(c.source for c in used).items()))}
        return used, info


def _candidate(rec: dict, correct: bool, spec: RunSpec, run: int, path: str, line: int) -> Candidate:
    messages = rec["messages"]
    n_prompt = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), len(messages))
    return Candidate(
        id=rec["id"], idx=rec["idx"], sample=rec["sample"], run=run,
        source=spec.source or rec.get("source") or Path(path).name.removesuffix(".jsonl"),
        gt=rec["gt"], pred=rec["pred"], stop_reason=rec["stop_reason"], correct=correct,
        messages=messages, n_prompt=n_prompt, where=f"{path}, line {line}")


def cap_per_prompt(candidates: list[Candidate], cap: int) -> list[Candidate]:
    """Mixture sampling: at most `cap` samples per prompt, the lowest sample numbers."""
    if cap <= 0:
        return candidates
    by_idx: dict[str, list[Candidate]] = defaultdict(list)
    for c in candidates:
        by_idx[c.idx].append(c)
    keep = {id(c) for group in by_idx.values() for c in sorted(group, key=lambda c: c.sample)[:cap]}
    return [c for c in candidates if id(c) in keep]


@dataclass
class Group:
    """All trajectories of one prompt, across runs, in (run, sample) order."""

    idx: str
    prompt: list[dict]
    gt: str
    members: list[Candidate]


def _natural(idx: str) -> tuple:
    return (0, int(idx), "") if idx.isdigit() else (1, 0, idx)


def group_by_prompt(candidates: list[Candidate]) -> list[Group]:
    """One group per (idx, prompt messages): runs over different data sets may share an idx."""
    groups: dict[tuple[str, str], Group] = {}
    for c in sorted(candidates, key=lambda c: (c.run, c.sample)):
        key = (c.idx, json.dumps(c.prompt, ensure_ascii=False))
        g = groups.setdefault(key, Group(c.idx, c.prompt, c.gt, []))
        if c.gt != g.gt:
            first = g.members[0]
            raise FormatError(c.where, None, "gt", f"{c.gt!r} for idx {c.idx!r}, but {first.where} "
                              f"has {g.gt!r}: the runs were made from different data")
        g.members.append(c)
    return [groups[k] for k in sorted(groups, key=lambda k: (_natural(k[0]), k[1]))]


def dedup(members: list[Candidate], mode: str) -> list[Candidate]:
    """Keep the first of repeated trajectories (within each label, as the reference did)."""
    seen, kept = set(), []
    for c in members:
        body = json.dumps(c.completion) if mode == "trajectory" else c.completion[0]["content"]
        if (c.correct, body) not in seen:
            seen.add((c.correct, body))
            kept.append(c)
    return kept


def choose_pairs(chosen: list, rejected: list, n: int, rng: random.Random) -> list[tuple]:
    """SPEC §4.4 step 8, seeded: shuffle both; if both have more than n, pair them k-th with k-th;
    otherwise draw min(n, |C x R|) distinct pairs of the product (a trajectory may repeat)."""
    chosen, rejected = chosen[:], rejected[:]
    rng.shuffle(chosen)
    rng.shuffle(rejected)
    if len(chosen) > n and len(rejected) > n:
        return list(zip(chosen[:n], rejected[:n], strict=True))
    product = [(c, r) for c in chosen for r in rejected]
    return rng.sample(product, min(n, len(product)))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_stats(counts: list[tuple[int, int]]) -> dict:
    """pass@1 and pass@k, k = the usual number of samples per prompt (prompts with fewer are left
    out of pass@k), from (n, correct) per prompt."""
    counts = [(n, c) for n, c in counts if n > 0]
    if not counts:
        return {"k": 0, "prompts": 0}
    k = max(Counter(n for n, _ in counts).most_common(), key=lambda kv: (kv[1], kv[0]))[0]
    out: dict = {"k": k, "prompts": len(counts)}
    for kk in sorted({1, k}):
        vals = [pass_at_k(n, c, kk) for n, c in counts if n >= kk]
        out[f"pass@{kk}"] = _r(sum(vals) / len(vals))
    return out


def _r(x: float) -> float:
    return round(x, 6)


def _share(part: int, whole: int) -> float | None:
    return _r(part / whole) if whole else None


@dataclass
class Collected:
    """What `build` went through, for the stats."""

    runs: list[dict]
    candidates: list[Candidate]  # read and capped, before filters
    report: dict
    kept: list[Candidate]
    groups: list[Group]
    deduped: list[list[Candidate]]  # per group, after filters and dedup
    pair_counts: list[int]  # per group
    grader_version: str | None
    bad_lines: dict[str, list[int]]
    length_capped: dict[str, int]  # chosen / desirable examples cut by a length cap (filters.LENGTH_CAPS)


def build(cfg: PairsConfig) -> tuple[list[dict], list[dict], dict]:
    """(DPO rows, KTO rows, stats) from the configured runs."""
    check_config(cfg)
    problems = Problems(cfg.skip_bad_lines)
    loader = Loader(cfg, problems)
    candidates, runs = [], []
    for run, spec in enumerate(cfg.runs):
        used, info = loader.load(spec, run)
        candidates += used
        runs.append(info)
    if cfg.filters.max_tokens > 0:
        count_tokens(candidates, cfg.tokenizer)
    kept, report = apply_filters(candidates, cfg.filters)
    print(format_report(report, len(candidates)), file=sys.stderr)
    kept_ids = {id(c) for c in kept}

    groups = group_by_prompt(candidates)
    dpo_rows, kto_rows, pair_counts, deduped = [], [], [], []
    length_capped = {"chosen": 0, "desirable": 0}
    for g in groups:
        members = dedup([c for c in g.members if id(c) in kept_ids], cfg.dedup)
        deduped.append(members)
        good = [c for c in members if c.correct]
        bad = [c for c in members if not c.correct]
        rng = random.Random(f"{cfg.seed}:{g.idx}:{json.dumps(g.prompt, ensure_ascii=False)}")
        pairs = choose_pairs(good, bad, cfg.pairs_per_prompt, rng) if good and bad else []
        pair_counts.append(len(pairs))
        for ch, rj in pairs:
            length_capped["chosen"] += ch.stop_reason in LENGTH_CAPS
            dpo_rows.append({"prompt": g.prompt, "chosen": ch.completion, "rejected": rj.completion,
                             "gt": g.gt, "idx": g.idx})
        labelled = [c for pair in pairs for c in pair] if cfg.kto_from == "pairs" else members
        for c in labelled:
            length_capped["desirable"] += c.correct and c.stop_reason in LENGTH_CAPS
            kto_rows.append({"prompt": g.prompt, "completion": c.completion, "label": c.correct,
                             "gt": g.gt, "idx": g.idx})
    bad_lines = {p: lines for p, lines in problems.lines.items() if lines}
    seen = Collected(runs, candidates, report, kept, groups, deduped, pair_counts,
                     loader.version[0] if loader.version else None, bad_lines, length_capped)
    return dpo_rows, kto_rows, stats(cfg, seen, dpo_rows, kto_rows)


def _correct(cs: list[Candidate]) -> int:
    return sum(c.correct for c in cs)


def stats(cfg: PairsConfig, seen: Collected, dpo_rows: list[dict], kto_rows: list[dict]) -> dict:
    by_source = {}
    for s in sorted({c.source for c in seen.candidates}):
        mine = [c for c in seen.candidates if c.source == s]
        per_prompt = [[c for c in g.members if c.source == s] for g in seen.groups]
        by_source[s] = {"trajectories": len(mine), "correct": _correct(mine),
                        "correct_share": _share(_correct(mine), len(mine)),
                        "pass_at_k": pass_at_k_stats([(len(m), _correct(m)) for m in per_prompt])}
    deduped = [c for m in seen.deduped for c in m]
    with_pair = [n for n in seen.pair_counts if n]
    desirable = sum(r["label"] for r in kto_rows)
    return {
        "format_version": preference.FORMAT_VERSION,
        "config": to_dict(cfg),
        "grader": cfg.grader,
        "grader_version": seen.grader_version,
        "runs": seen.runs,
        "sources": by_source,
        "trajectories": {
            "read": sum(r["read"] for r in seen.runs), "used": len(seen.candidates),
            "correct": _correct(seen.candidates),
            "correct_share": _share(_correct(seen.candidates), len(seen.candidates)),
            "after_filters": len(seen.kept), "after_dedup": len(deduped),
            "duplicates_removed": len(seen.kept) - len(deduped),
            "correct_share_after_dedup": _share(_correct(deduped), len(deduped)),
        },
        "filters": seen.report,
        "prompts": {
            "total": len(seen.groups),
            "with_correct_before_filters": sum(any(c.correct for c in g.members) for g in seen.groups),
            "with_correct": sum(any(c.correct for c in m) for m in seen.deduped),
            "with_incorrect": sum(any(not c.correct for c in m) for m in seen.deduped),
            "with_pair": len(with_pair),
        },
        "pass_at_k": pass_at_k_stats([(len(g.members), _correct(g.members)) for g in seen.groups]),
        "dpo": {"rows": len(dpo_rows), "prompts": len({r["idx"] for r in dpo_rows}),
                "pairs_per_prompt": cfg.pairs_per_prompt,
                "chosen_length_capped": seen.length_capped["chosen"],
                "mean_pairs_per_prompt_with_pair": _share(sum(with_pair), len(with_pair)),
                "prompts_by_pair_count": {str(k): v for k, v in sorted(Counter(seen.pair_counts).items())}},
        "kto": {"from": cfg.kto_from, "rows": len(kto_rows), "prompts": len({r["idx"] for r in kto_rows}),
                "desirable": desirable,
                "desirable_length_capped": seen.length_capped["desirable"],
                "undesirable": len(kto_rows) - desirable,
                "desirable_share": _share(desirable, len(kto_rows))},
        "bad_lines_skipped": sum(len(v) for v in seen.bad_lines.values()),
        "bad_lines": seen.bad_lines,
    }


MESSAGES = List({"role": Value("string"), "content": Value("string")})
DPO_FEATURES = Features({"prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES,
                         "gt": Value("string"), "idx": Value("string")})
KTO_FEATURES = Features({"prompt": MESSAGES, "completion": MESSAGES, "label": Value("bool"),
                         "gt": Value("string"), "idx": Value("string")})


def to_dataset(rows: list[dict], features: Features, validate, where: Path) -> Dataset:
    """Validate every row with the format's validator, then make a `datasets.Dataset`."""
    for i, row in enumerate(rows):
        validate(row, str(where), i)
    return Dataset.from_dict({k: [r[k] for r in rows] for k in features}, features=features)


def check_output(out: Path) -> None:
    """Replace only an earlier output of this tool (or an empty folder), never anything else."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "stats.json").is_file())):
        raise FileExistsError(f"{out}: exists and is not a preference data set (no stats.json); "
                              "refusing to replace it")


def write(out: Path, dpo: Dataset, kto: Dataset, stats_: dict) -> None:
    """All or nothing: build in a sibling temp folder, then rename it into place; stats.json,
    written last, marks a complete data set."""
    check_output(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        for name, ds in (("dpo", dpo), ("kto", kto)):
            # An empty data set saved with no shard cannot be loaded again (datasets 5.2).
            ds.save_to_disk(str(tmp / name), num_shards=1 if len(ds) == 0 else None)
        (tmp / "stats.json").write_text(json.dumps(stats_, indent=2, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
        if out.exists():
            out.rename(old)
        tmp.rename(out)
    except BaseException:
        if old.exists() and not out.exists():
            old.rename(out)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def summary(stats_: dict) -> str:
    t, p, d, k = stats_["trajectories"], stats_["prompts"], stats_["dpo"], stats_["kto"]
    pk = stats_["pass_at_k"]
    at_k = f"pass@{pk['k']}"
    return (f"trajectories: {t['used']} used of {t['read']} read, {t['correct_share']} correct, "
            f"{t['after_filters']} after filters, {t['after_dedup']} after dedup\n"
            f"prompts: {p['total']}, {p['with_correct']} with a correct trajectory, "
            f"{p['with_pair']} with a pair; pass@1 {pk.get('pass@1')}, {at_k} {pk.get(at_k)}\n"
            f"dpo: {d['rows']} pairs; kto: {k['rows']} rows ({k['desirable']} desirable, "
            f"{k['undesirable']} undesirable); bad lines skipped: {stats_['bad_lines_skipped']}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--skip-bad-lines" in argv:
        argv = [a for a in argv if a != "--skip-bad-lines"] + ["skip_bad_lines=true"]
    cfg = parse_cli(PairsConfig, argv, description=__doc__.split("\n\n")[0])
    out = Path(cfg.output)
    try:
        check_config(cfg)
        check_output(out)
        dpo_rows, kto_rows, stats_ = build(cfg)
        dpo = to_dataset(dpo_rows, DPO_FEATURES, preference.validate_pair, out / "dpo")
        kto = to_dataset(kto_rows, KTO_FEATURES, preference.validate_unpaired, out / "kto")
        write(out, dpo, kto, stats_)
    except (ConfigError, FormatError, FileNotFoundError, FileExistsError) as exc:
        sys.exit(f"error: {exc}")
    print(summary(stats_))
    if not dpo_rows:
        print("warning: no prompt has both a correct and an incorrect trajectory: the dpo data set "
              "is empty (see the filter report and stats.json)", file=sys.stderr)
    print(f"wrote {out}/dpo, {out}/kto, {out}/stats.json")
    if cfg.push_to_hub:
        dpo.push_to_hub(cfg.push_to_hub, config_name="dpo")
        kto.push_to_hub(cfg.push_to_hub, config_name="kto")
        print(f"pushed to the Hub: {cfg.push_to_hub} (configs dpo, kto)")


if __name__ == "__main__":
    main()
