"""The Markdown report of one graded run, from its metrics (`metrics.compute`)."""

from __future__ import annotations


def _cell(s: str, width: int = 60) -> str:
    s = s.replace("|", "\\|").replace("\n", " ")
    return "`" + (s if len(s) <= width else s[:width - 1] + "…") + "`" if s else "(empty)"


def _table(header: list[str], rows: list[list]) -> list[str]:
    fmt = [f"{x:.2f}" if isinstance(x, float) else str(x) for x in header]
    lines = ["| " + " | ".join(fmt) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in row) + " |")
    return lines


def _grouped(m: dict, key: str, title: str, graders: list[str]) -> list[str]:
    if not m[key]:
        return []
    names = sorted({name for g in graders for name in m[key].get(g, {})})
    first = m[key][graders[0]]
    rows = [[name, first.get(name, {}).get("n", 0),
             *[m[key].get(g, {}).get(name, {}).get("accuracy", 0.0) for g in graders]] for name in names]
    return ["", f"## {title} (accuracy, %)", "", *_table([title.split()[-1], "n", *graders], rows)]


def render(path: str, m: dict, max_listed: int) -> str:
    graders = m["graders"]
    lines = [f"# Evaluation of `{path}`", "",
             f"Headline grader: **{m['headline']}** (`paper` reproduces the official grader; `strict` "
             "is mathematically exact). Grader versions: `" + m["grader_version"] + "`.", "",
             *_table(["", *graders], [
                 ["accuracy, %", *[m["accuracy"][g] for g in graders]],
                 ["timeouts", *[m["timeouts"][g] for g in graders]]]),
             "", f"- trajectories graded: {m['n_scored']} over {m['n_problems']} problems "
             f"(samples per problem: {m['samples_per_problem']}); skipped, no ground truth: {m['no_gt']}",
             f"- empty predictions: {m['empty_predictions']}; mean turns: {m['mean_turns']:.2f}; "
             f"tool errors: {m['tool_error_rate']:.2f}% of {m['observation_turns']} observation turns",
             f"- stop reasons: {m['stop_reasons']}",
             "- predictions re-extracted differently from the generator's: "
             f"{m['pred_differs_from_generator']}"]
    if m.get("bad_lines"):
        lines.append(f"- unreadable lines skipped: {m['bad_lines']}")
    samples = sorted({s for g in graders for s in m["pass@1_by_sample"][g]}, key=int)
    lines += ["", "## pass@1 per sampling column (%)", "",
              *_table(["sample", *graders], [[s, *[m["pass@1_by_sample"][g].get(s, 0.0) for g in graders]]
                                             for s in samples])]
    ks = sorted({k for g in graders for k in m["pass@k"][g]}, key=int)
    lines += ["", "## pass@k (%)", "",
              *_table(["k", *graders], [[k, *[m["pass@k"][g][k] for g in graders]] for k in ks])]
    lines += _grouped(m, "by_subject", "By MATH subject", graders)
    lines += _grouped(m, "by_level", "By level", graders)
    lines += _grouped(m, "by_source", "By source", graders)
    dis = m["disagreements"]
    lines += ["", f"## Disagreements between graders ({len(dis)})", ""]
    if dis:
        lines += _table(["id", "pred (raw)", "gt (raw)", *graders],
                        [[d["id"], _cell(d["pred_raw"]), _cell(d["gt_raw"]), *[d[g] for g in graders]]
                         for d in dis[:max_listed]])
        if len(dis) > max_listed:
            lines.append(f"\n… and {len(dis) - max_listed} more (all in the metrics JSON).")
    diffs = m["pred_differences"]
    if diffs:
        lines += ["", f"## Predictions that differ from the generator's ({len(diffs)})", "",
                  *_table(["id", "generator", "re-extracted"],
                          [[d["id"], _cell(d["generator"]), _cell(d["re_extracted"])]
                           for d in diffs[:max_listed]])]
    return "\n".join(lines) + "\n"
