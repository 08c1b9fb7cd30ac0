"""The paper's Table 1 from pipeline runs: rows SFT, the iterations, the baselines; columns the test
sets and their average; the paper's published numbers beside ours where the model matches.

    .venv-inference/bin/python scripts/make_tables.py runs/tiny_cpu [runs/tiny_cpu_mkto ...] \
        [--seeds runs/tiny_cpu_seed1 ...] [--method-seeds _seed1 _seed2] [--out runs/tiny_cpu/tables.md] \
        [--plot assets/tiny_cpu_accuracy.png]

The first run gives the SFT row and one row per iteration; every further run (a baseline: single-
turn DPO, fixed reference, M-KTO, ...) gives one row, its last iteration, labelled by its config's
`label`. Accuracy is the `paper` grader's (comparable with the paper); the `strict` grader's
follows in a second table. `--method-seeds` adds every method's mean over seeds, read from the run
folders named like each given run plus a suffix (runs/tiny_cpu_mkto_seed1), and its difference from the
first run's method on the same seed: one seed moves a tiny-world number by several points, so a
comparison is read from paired differences, not from one column.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

# SPEC §9 / FIELD §4: the paper's Table 1 (GSM8K, MATH), keyed by the `paper_model` of a run config, then by
# the row label of configs/<model>_<method>.yaml (a method's final iteration; Gemma-1.1's M-DPO per iteration).
PUBLISHED = {
    "gemma-1.1-it-7b": {
        "SFT": (77.5, 46.1), "RAFT": (79.2, 47.3), "Iterative single-turn DPO": (81.7, 48.9),
        "Iterative single-turn KTO": (80.6, 49.0), "Iterative M-DPO + fixed reference": (79.9, 48.0),
        "M-DPO iteration 1": (81.5, 49.1), "M-DPO iteration 2": (82.5, 49.7),
        "M-DPO iteration 3": (83.9, 51.2), "M-DPO": (83.9, 51.2), "Iterative M-KTO": (82.1, 49.5),
        # the paper's ablations (FIELD §4), by the labels of their configs
        "M-DPO beta=0.01": (81.7, 50.1), "M-DPO beta=0.5": (82.8, 49.7), "M-DPO + NLL": (81.7, 49.5),
        "M-DPO on-policy only": (83.1, 49.5), "M-DPO, N=12": (83.5, 51.2), "M-DPO, N=6": (82.0, 49.2),
        "M-DPO from SFT 1 epoch": (80.6, 46.7), "M-DPO from SFT 2 epochs": (82.4, 49.8),
    },
    "codegemma-1.1-it-7b": {
        "SFT": (77.3, 46.4), "RAFT": (78.8, 48.4), "Iterative single-turn DPO": (79.1, 48.9),
        "Iterative single-turn KTO": (80.2, 48.6), "Iterative M-DPO": (81.5, 50.1), "Iterative M-KTO": (81.6, 49.6),
    },
    "mistral-7b-v0.3": {
        "SFT": (77.8, 42.7), "RAFT": (79.8, 43.7), "Iterative single-turn DPO": (79.8, 45.1),
        "Iterative single-turn KTO": (81.3, 46.3), "Iterative M-DPO": (82.3, 47.5), "Iterative M-KTO": (81.7, 46.7),
    },
    "gemma-2-it-9b": {
        "SFT": (84.1, 51.0), "RAFT": (84.2, 52.6), "Iterative single-turn DPO": (85.2, 53.1),
        "Iterative single-turn KTO": (85.4, 52.9), "Iterative M-DPO": (86.3, 54.5), "Iterative M-KTO": (86.1, 54.5),
    },
}
PUBLISHED_COLUMNS = ("gsm8k", "math")


def accuracy(metrics_file: Path, grader: str) -> float | None:
    if not metrics_file.exists():
        return None
    return json.loads(metrics_file.read_text())["accuracy"].get(grader)  # already in %


def run_rows(run: Path, grader: str, first: bool) -> tuple[list[tuple[str, dict]], dict]:
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    sets = [s["name"] for s in cfg["evaluate"]["sets"]]
    tags = ["sft"] + [f"iter{t}" for t in range(1, cfg["iterations"] + 1)]
    rows = []
    for tag in tags if first else tags[-1:]:
        scores = {s: accuracy(run / "eval" / tag / s / "generate" / "trajectories.metrics.json", grader) for s in sets}
        if tag == "sft":
            label = "SFT"
        elif first:
            label = f"{cfg['label']} iteration {tag[4:]}"
        else:
            label = cfg["label"]
        if (run / tag / "train" / "NO_DATA").exists():
            label += " (no usable preference data: model unchanged)"
        rows.append((label, scores))
    return rows, cfg


def chosen_steps(run: Path, first: bool) -> list[str]:
    """Per row of `run_rows`: the training step that became the iteration's model, of the run's last
    step, and how it was chosen (iter<t>/select/selection.json), e.g. "30 / 45 (best)"."""
    cfg = yaml.safe_load((run / "config.resolved.yaml").read_text())
    tags = ["sft"] + [f"iter{t}" for t in range(1, cfg["iterations"] + 1)]
    cells = []
    for tag in tags if first else tags[-1:]:
        record = run / tag / "select" / "selection.json"
        chosen = json.loads(record.read_text()) if record.exists() else None
        cells.append(f"{chosen['step']} / {chosen.get('final_step', chosen['step'])} ({chosen['selection']})"
                     if chosen else "")
    return cells


def table(runs: list[Path], grader: str) -> tuple[str, list[tuple[str, dict]]]:
    rows, cfg0 = run_rows(runs[0], grader, first=True)
    for r in runs[1:]:
        rows += run_rows(r, grader, first=False)[0]
    steps = [c for i, r in enumerate(runs) for c in chosen_steps(r, first=i == 0)]
    sets = [s["name"] for s in cfg0["evaluate"]["sets"]]
    published = PUBLISHED.get(cfg0.get("paper_model", ""), {})
    head = (["method", *sets, "average"] + (["paper GSM8K", "paper MATH"] if published else [])
            + (["checkpoint: step / last"] if any(steps) else []))
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (label, scores), step in zip(rows, steps, strict=True):
        vals = [scores[s] for s in sets]
        done = [v for v in vals if v is not None]
        avg = sum(done) / len(done) if done and len(done) == len(vals) else None
        cells = [label, *("—" if v is None else f"{v:.1f}" for v in vals), "—" if avg is None else f"{avg:.1f}"]
        if published:
            paper = published.get(label) or published.get(label.rsplit(" iteration ", 1)[0]
                                                          if label.endswith(f" {cfg0['iterations']}") else "")
            cells += [f"{paper[0]:.1f}", f"{paper[1]:.1f}"] if paper else ["", ""]
        cells += [step] if any(steps) else []
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines), rows


def seeds_table(runs: list[Path], grader: str) -> str:
    """The same experiment over several seeds: one column a run, their mean, and the gain of the last
    iteration over SFT, per test set."""
    per_run = [run_rows(r, grader, first=True) for r in runs]
    cfg0 = per_run[0][1]
    out = []
    for s in (x["name"] for x in cfg0["evaluate"]["sets"]):
        names = [f"{r.name} (seed {cfg.get('world', {}).get('seed', '?')})"
                 for r, (_, cfg) in zip(runs, per_run, strict=True)]
        head = ["method", *names, "mean"]
        lines = [f"### {s}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        columns = [[scores[s] for _, scores in rows] for rows, _ in per_run]
        labels = [label for label, _ in per_run[0][0]]
        gains = [c[-1] - c[0] if None not in (c[0], c[-1]) else None for c in columns]
        for i, label in enumerate([*labels, f"gain: {labels[-1]} - SFT"]):
            vals = [c[i] for c in columns] if i < len(labels) else gains
            mean = sum(vals) / len(vals) if None not in vals else None
            lines.append("| " + " | ".join([label, *("—" if v is None else f"{v:.1f}" for v in [*vals, mean])]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def iteration_scores(run: Path, grader: str, test_set: str, iterations: int) -> list[float | None]:
    """Accuracy after each iteration; dashes (None) for a run that is missing or unfinished."""
    return [accuracy(run / "eval" / f"iter{t}" / test_set / "generate" / "trajectories.metrics.json", grader)
            for t in range(1, iterations + 1)]


def methods_seeds_table(runs: list[Path], suffixes: list[str], grader: str) -> str:
    """Each method (a given run and its seed runs `<run><suffix>`): its mean over seeds per iteration,
    its last iteration per seed, and that minus the first run's last iteration on the same seed."""
    def mean(vals: list[float | None]) -> str:
        done = [v for v in vals if v is not None]
        if not done:
            return "—"
        text = f"{sum(done) / len(done):.1f}"
        return text if len(done) == 1 else f"{text} ({min(done):.1f}-{max(done):.1f}, {len(done)} seeds)"

    def cells(vals: list[float | None], fmt: str) -> str:
        return " / ".join("—" if v is None else format(v, fmt) for v in vals)

    cfg0 = yaml.safe_load((runs[0] / "config.resolved.yaml").read_text())
    iterations = cfg0["iterations"]
    groups = [[r, *(r.parent / f"{r.name}{s}" for s in suffixes)] for r in runs]
    labels = [yaml.safe_load((g[0] / "config.resolved.yaml").read_text())["label"] for g in groups]
    seeds = "seed " + " / ".join(
        str(yaml.safe_load(c.read_text()).get("world", {}).get("seed", "?")) if c.exists() else r.name
        for r in groups[0] for c in [r / "config.resolved.yaml"])
    out = []
    for s in (x["name"] for x in cfg0["evaluate"]["sets"]):
        scores = [[iteration_scores(r, grader, s, iterations) for r in g] for g in groups]
        base = [per_seed[-1] for per_seed in scores[0]]
        head = ["method", *(f"iteration {t}: mean" for t in range(1, iterations + 1)),
                f"iteration {iterations}: {seeds}", f"minus {labels[0]}, same seed"]
        lines = [f"### {s}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, (label, per_run) in enumerate(zip(labels, scores, strict=True)):
            last = [per_seed[-1] for per_seed in per_run]
            diff = [a - b if None not in (a, b) else None for a, b in zip(last, base, strict=True)]
            lines.append("| " + " | ".join([label, *(mean([p[t] for p in per_run]) for t in range(iterations)),
                                           cells(last, ".1f"), cells(diff, "+.1f") if i else ""]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def plot(rows: list[tuple[str, dict]], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(label, scores) for label, scores in rows if label == "SFT" or "iteration" in label]
    sets = list(series[0][1])
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    for s in sets:
        ys = [scores[s] for _, scores in series]
        ax.plot(range(len(series)), ys, marker="o", label=s)
    ax.set_xticks(range(len(series)), ["SFT" if lbl == "SFT" else f"iter {lbl.rsplit(' ', 1)[-1]}"
                                       for lbl, _ in series])
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="run folders (runs/<name>); the first is the main run")
    ap.add_argument("--seeds", type=Path, nargs="+", default=[], metavar="RUN",
                    help="runs of the first run's experiment with other seeds: adds a per-seed table")
    ap.add_argument("--method-seeds", nargs="+", default=[], metavar="SUFFIX",
                    help="run-name suffixes of other seeds (_seed1 _seed2): adds each method's mean over seeds")
    ap.add_argument("--out", type=Path, help="Markdown file (default: <first run>/tables.md)")
    ap.add_argument("--plot", type=Path, help="PNG of accuracy per iteration (default: <first run>/accuracy.png)")
    args = ap.parse_args(argv)
    for r in [*args.runs, *args.seeds]:
        if not (r / "config.resolved.yaml").exists():
            sys.exit(f"make_tables: {r} is not a pipeline run (no config.resolved.yaml)")
    paper_table, rows = table(args.runs, "paper")
    strict_table, _ = table(args.runs, "strict")
    text = (f"## Accuracy (%), paper grader\n\n{paper_table}\n\n"
            f"## Accuracy (%), strict grader\n\n{strict_table}\n")
    if args.seeds:
        text += f"\n## Seeds (%), paper grader\n\n{seeds_table([args.runs[0], *args.seeds], 'paper')}\n"
    if args.method_seeds:
        text += (f"\n## Methods over seeds (%), paper grader\n\n"
                 f"{methods_seeds_table(args.runs, args.method_seeds, 'paper')}\n")
    out = args.out or args.runs[0] / "tables.md"
    out.write_text(text)
    print(text)
    if any(v is not None for _, scores in rows for v in scores.values()):
        png = args.plot or args.runs[0] / "accuracy.png"
        plot(rows, png, args.runs[0].name)
        print(f"plot: {png}")


if __name__ == "__main__":
    main()
