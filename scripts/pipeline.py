"""The online iterative loop of the paper (Algorithm 1), chained over the stage CLIs.

    bash scripts/run_iterative.sh configs/tiny_cpu.yaml [key=value ...] [--dry-run]

For t = 1..T: generate on the iteration's prompts with the current model (mixed with samples of
the previous model) -> grade -> preference data -> M-DPO / M-KTO from the current model against
the configured reference -> evaluate on the test sets. Each stage runs in its own environment
through its own CLI, in `runs/<name>/iter<t>/<stage>/`; a stage whose `.done` marker exists is
skipped, and a stage interrupted midway resumes (every stage CLI resumes from its own output).
Stopping the pipeline (Ctrl-C, SIGTERM, SIGKILL on Linux) stops its running stage with it.
`--dry-run` prints the commands, so a user can drive the stages by hand, in order.

Generation is grouped by model (`runs/<name>/generate/<model>/`): a model's engine starts once
for its evaluation, its samples for the next iteration and, as the mixture's previous model, for
the one after; on a GPU node an engine start costs minutes, on the tiny CPU run a third of the time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from inference.config import ConfigError, build, load_yaml  # noqa: E402

VENV = {"inference": ROOT / ".venv-inference", "alignment": ROOT / ".venv-alignment", "sft": ROOT / ".venv-sft"}


def _die_with(parent: int) -> None:
    """Runs in a stage's child before exec: on Linux the kernel sends it SIGTERM when the pipeline
    dies, even by SIGKILL, so no stage (and no vLLM engine behind it) lives on unsupervised."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the pipeline died before prctl took effect
            os._exit(143)


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's time limit, `kill`) unwinds like Ctrl-C, through run_stage's cleanup."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def run_stage(cmd: list[str], env: dict) -> int:
    """Runs one stage; if the pipeline is interrupted (Ctrl-C, SIGTERM), the stage is asked to stop
    (SIGTERM, then SIGKILL after 30 s) before the pipeline exits, so a re-run never races it."""
    parent = os.getpid()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, preexec_fn=lambda: _die_with(parent))
    try:
        return proc.wait()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise


@dataclass
class WorldConfig:
    build: bool = field(default=False, metadata={"help": "build the tiny offline world first"})
    seed: int = 0
    args: list[str] = field(default_factory=list, metadata={"help": "extra make_tiny_world.py flags"})


@dataclass
class SFTConfig:
    model: str = field(default="", metadata={"help": (
        "an SFT model to start from (a folder, '{runs}/<run>/sft/model', or a Hub id); empty: train one")})
    config: str = field(default="SFT/configs/tiny_cpu.yaml", metadata={"help": "axolotl config"})
    base_model: str = field(default="{world}/model", metadata={"help": "model that SFT starts from"})
    data: str = field(default="{world}/data/sft.jsonl", metadata={"help": "SFT messages JSONL"})
    overrides: list[str] = field(default_factory=list)


@dataclass
class GenerateConfig:
    config: str = "inference/configs/generate_tiny.yaml"
    # paper §3.2 / FIELD §4 "Recipe": N=30 per prompt, 20 from the current model, 10 from the previous
    samples_current: int = 20
    samples_previous: int = 10
    overrides: list[str] = field(default_factory=list)


@dataclass
class StageConfig:
    config: str = ""
    overrides: list[str] = field(default_factory=list)


@dataclass
class TrainConfig:
    algorithm: Literal["mdpo", "mkto"] = "mdpo"
    config: str = "alignment_algorithms/configs/mdpo_tiny_cpu.yaml"
    # paper: the reference is updated to the previous iteration's model (better than fixed)
    reference: Literal["previous", "sft"] = "previous"
    launcher: list[str] = field(default_factory=list, metadata={"help": (
        "command before the script, from the alignment environment's bin/: e.g. [accelerate, launch, "
        "--config_file, alignment_algorithms/accelerate/zero2.yaml]; empty: python")})
    overrides: list[str] = field(default_factory=list)


@dataclass
class EvalSet:
    name: str = "test"
    path: str = field(default="{world}/data/test.jsonl", metadata={"help": "local JSONL or Hub data set id"})
    data_name: str = "gsm8k"
    split: str = "test"
    hub_config: str | None = None
    limit: int = field(default=-1, metadata={"help": "evaluate on the first N problems; -1: all"})


@dataclass
class EvalConfig:
    config: str = "inference/configs/generate_tiny_eval.yaml"
    sets: list[EvalSet] = field(default_factory=lambda: [EvalSet()])
    overrides: list[str] = field(default_factory=list)


@dataclass
class PipelineConfig:
    name: str = field(default="tiny_cpu", metadata={"help": "run folder: runs/<name>"})
    label: str = field(default="M-DPO", metadata={"help": "row label in the tables"})
    paper_model: str = field(default="", metadata={"help": (
        "the paper's base model this run reproduces (e.g. gemma-1.1-it-7b): its published numbers go beside ours")})
    runs_dir: str = "runs"
    iterations: int = 3  # paper: three iterations
    prompts: list[str] = field(default_factory=lambda: ["{world}/data/train.jsonl"],
                               metadata={"help": "one prompt file per iteration, or one file split evenly"})
    prompts_data_name: str = field(default="gsm8k", metadata={"help": "gsm8k, math, or a name for rows with gt"})
    prompts_split: str = "train"
    prompts_per_iteration: int = field(default=-1, metadata={"help": "cap on each iteration's prompts; -1: all"})
    world: WorldConfig = field(default_factory=WorldConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    grade: StageConfig = field(default_factory=lambda: StageConfig("inference/configs/evaluate.yaml"))
    pairs: StageConfig = field(default_factory=lambda: StageConfig("inference/configs/pairs_tiny.yaml"))
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)


@dataclass
class Run:
    """One generation run: a generate config, its overrides and its output file."""

    title: str
    config: str
    output: Path
    overrides: list[str]


def backend_settings(config: str, overrides: list[str]) -> str:
    """The engine a run needs: its config's `backend` section after its `backend.*` overrides."""
    path = ROOT / config
    backend = dict((load_yaml(path)[0].get("backend") or {}) if path.exists() else {})
    for item in overrides:
        key, _, raw = item.partition("=")
        if key.startswith("backend."):
            backend[key.removeprefix("backend.")] = yaml.safe_load(raw)
    return json.dumps(backend, sort_keys=True)


class Runner:
    """Runs (or prints) stage commands; a finished stage leaves `.done` and is not run again."""

    def __init__(self, cfg: PipelineConfig, dry_run: bool):
        self.cfg, self.dry_run = cfg, dry_run
        self.run_dir = ROOT / cfg.runs_dir / cfg.name
        self.world = self.run_dir / "world"
        self.log = self.run_dir / "commands.log"

    def path(self, template: str) -> str:
        return (template.replace("{world}", str(self.world)).replace("{run}", str(self.run_dir))
                .replace("{runs}", str(self.run_dir.parent)))

    def stage(self, out_dir: Path, title: str, cmd: list[str], env: dict | None = None) -> None:
        done = out_dir / ".done"
        if done.exists():
            print(f"[skip] {title}: done ({out_dir})")
            return
        line = " ".join(shlex.quote(c) for c in cmd)
        if self.dry_run:
            print(f"# {title}\n{line}\n")
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as fh:
            fh.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n{line}\n")
        print(f"[run ] {title}", flush=True)
        start = time.time()
        returncode = run_stage(cmd, {**os.environ, **(env or {})})
        if returncode != 0:
            sys.exit(f"pipeline: stage '{title}' failed (exit {returncode}); fix it and re-run the "
                     f"same command to resume. Command:\n{line}")
        done.write_text(json.dumps({"seconds": round(time.time() - start, 1)}) + "\n")
        print(f"[done] {title} in {time.time() - start:.0f}s", flush=True)

    def py(self, env: str, *args: str) -> list[str]:
        return [str(VENV[env] / "bin" / "python"), *args]

    # --- stages -------------------------------------------------------------------------
    def build_world(self) -> None:
        w = self.cfg.world
        if w.build:
            self.stage(self.world, "build the tiny world", self.py(
                "alignment", "scripts/make_tiny_world.py", "--seed", str(w.seed), "--out", str(self.world), *w.args))

    def sft_model(self) -> str:
        if self.cfg.sft.model:
            model = self.path(self.cfg.sft.model)
            if not self.dry_run and Path(model).is_absolute() and not Path(model).exists():
                sys.exit(f"pipeline: sft.model {model} does not exist (a baseline starts from its main run's SFT "
                         "model: run that first)")
            return model
        out = self.run_dir / "sft"
        s = self.cfg.sft
        self.stage(out, "SFT", ["bash", "SFT/train.sh", s.config, f"base_model={self.path(s.base_model)}",
                                f"datasets.0.path={self.path(s.data)}", f"output_dir={out / 'model'}",
                                *s.overrides])
        return str(out / "model")

    def prompt_file(self, t: int) -> tuple[str, list[str]]:
        """The iteration's prompt file and the slice overrides selecting its share."""
        files = [self.path(p) for p in self.cfg.prompts]
        if len(files) == self.cfg.iterations:
            return files[t - 1], []
        if len(files) != 1:
            sys.exit(f"pipeline: 'prompts' needs 1 file or {self.cfg.iterations} files, got {len(files)}")
        if not Path(files[0]).exists():
            if self.dry_run:  # the world is built by an earlier stage: its size is not known yet
                return files[0], [f"data.start=<share {t - 1}>", f"data.end=<share {t}>"]
            sys.exit(f"pipeline: prompt file {files[0]} does not exist")
        with open(files[0]) as fh:
            n = sum(1 for line in fh if line.strip())
        share = n // self.cfg.iterations  # paper: disjoint prompt sets per iteration
        return files[0], [f"data.start={share * (t - 1)}", f"data.end={share * t}"]

    def grade(self, out: Path, title: str, files: list[Path]) -> None:
        self.stage(out, title, self.py("inference", "-m", "inference.evaluate", "--config", self.cfg.grade.config,
                                       f"files={json.dumps([str(f) for f in files])}", *self.cfg.grade.overrides))

    def collection_path(self, t: int, source: str) -> Path:
        return self.run_dir / f"iter{t}" / "generate" / source / "trajectories.jsonl"

    def collection(self, t: int, source: str, model: str) -> Run:
        """Sampling on iteration t's prompts by the `source` model of the mixture."""
        g = self.cfg.generate
        data, slice_overrides = self.prompt_file(t)
        n = g.samples_current if source == "current" else g.samples_previous
        seed = 1000 * t + (0 if source == "current" else 500)
        return Run(f"iteration {t} prompts ({source} model)", g.config, self.collection_path(t, source), [
            f"model={model}", f"data.path={data}", f"data.name={self.cfg.prompts_data_name}",
            f"data.split={self.cfg.prompts_split}", *slice_overrides, f"data.limit={self.cfg.prompts_per_iteration}",
            f"sampling.n={n}", f"sampling.seed={seed}", f"source={source}", *g.overrides])

    def evaluation(self, tag: str, s: EvalSet, model: str) -> Run:
        e = self.cfg.evaluate
        out = self.run_dir / "eval" / tag / s.name / "generate" / "trajectories.jsonl"
        return Run(f"evaluation on {s.name}", e.config, out, [
            f"model={model}", f"data.path={self.path(s.path)}", f"data.name={s.data_name}", f"data.split={s.split}",
            f"data.limit={s.limit}", f"data.hub_config={s.hub_config or 'null'}", *e.overrides])

    def generate_with(self, k: int, model: str) -> None:
        """Every generation by the model of iteration k (k=0: SFT), one engine start per backend
        setting: its evaluation, its samples for iteration k+1 (as the current model) and, for the
        mixture, its samples for iteration k+2 (as the previous model). Then grade the evaluation."""
        tag = "sft" if k == 0 else f"iter{k}"
        runs = [self.evaluation(tag, s, model) for s in self.cfg.evaluate.sets]
        if k + 1 <= self.cfg.iterations:
            runs.append(self.collection(k + 1, "current", model))
        if k + 2 <= self.cfg.iterations and self.cfg.generate.samples_previous > 0:
            runs.append(self.collection(k + 2, "previous", model))
        groups: dict[str, list[Run]] = {}
        for r in runs:  # runs whose backend settings agree share one engine
            groups.setdefault(backend_settings(r.config, r.overrides), []).append(r)
        for i, group in enumerate(groups.values()):
            out = self.run_dir / "generate" / tag / (f"engine{i}" if len(groups) > 1 else "")
            cmd = self.py("inference", "-m", "inference.generate")
            for j, r in enumerate(group):
                cmd += [*(["--and"] if j else []), "--config", r.config, *r.overrides, f"output={r.output}"]
            self.stage(out, f"generate with the {tag} model: " + ", ".join(r.title for r in group), cmd)
        self.grade(self.run_dir / "eval" / tag / "grade", f"evaluate {tag}: grade",
                   [r.output for r in runs[:len(self.cfg.evaluate.sets)]])

    def iteration(self, t: int, current: str, sft: str) -> str:
        it = self.run_dir / f"iter{t}"
        g = self.cfg.generate
        runs = [{"path": str(self.collection_path(t, "current")), "source": "current",
                 "max_samples_per_prompt": g.samples_current}]
        if t > 1 and g.samples_previous > 0:  # the mixture: iteration t-1's model sampled these
            runs.append({"path": str(self.collection_path(t, "previous")), "source": "previous",
                         "max_samples_per_prompt": g.samples_previous})
        self.grade(it / "grade", f"iteration {t}: grade", [Path(r["path"]) for r in runs])
        pairs = it / "pairs"
        self.stage(pairs, f"iteration {t}: preference data", self.py(
            "inference", "-m", "inference.pairs", "--config", self.cfg.pairs.config, f"runs={json.dumps(runs)}",
            f"tokenizer={current}", f"output={pairs / 'data'}", *self.cfg.pairs.overrides))
        tr = self.cfg.train
        model_out = it / "train" / "model"
        reference = current if tr.reference == "previous" else sft
        subset = "dpo" if tr.algorithm == "mdpo" else "kto"
        stats = pairs / "data" / "stats.json"
        if not self.dry_run and json.loads(stats.read_text())[subset]["rows"] == 0:
            # A tiny model can fail every prompt: no preference signal, so nothing to train on.
            note = (f"iteration {t}: the preference data has no {subset} rows (see {stats}); "
                    "the model is carried over unchanged")
            print(f"[warn] {note}", flush=True)
            (it / "train").mkdir(parents=True, exist_ok=True)
            (it / "train" / "NO_DATA").write_text(note + "\n")
            return current
        script = f"alignment_algorithms/run_{tr.algorithm}.py"
        launch = ([str(VENV["alignment"] / "bin" / tr.launcher[0]), *tr.launcher[1:], script] if tr.launcher
                  else self.py("alignment", script))
        self.stage(it / "train", f"iteration {t}: {tr.algorithm.upper()}", [
            *launch, "--config", tr.config,
            "--model_name_or_path", current, "--ref_model_name_or_path", reference,
            "--dataset_path", str(pairs / "data" / subset), "--output_dir", str(model_out), *tr.overrides])
        return str(model_out)

    def run(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.resolved.yaml").write_text(yaml.safe_dump(dataclasses.asdict(self.cfg),
                                                                            sort_keys=False))
        self.build_world()
        sft = self.sft_model()
        self.generate_with(0, sft)
        current = sft
        for t in range(1, self.cfg.iterations + 1):
            current = self.iteration(t, current, sft)
            self.generate_with(t, current)
        if not self.dry_run:
            subprocess.run(self.py("inference", "scripts/make_tables.py", str(self.run_dir)), cwd=ROOT, check=False)


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load(path: str, overrides: list[str]) -> PipelineConfig:
    """A config may start from another (`base: configs/x.yaml`) and change only what differs."""
    data, lines = load_yaml(path)
    if "base" in data:
        base_path = ROOT / data.pop("base")
        base, _ = load_yaml(base_path)
        if "base" in base:
            sys.exit(f"pipeline: {path}: {base_path} has a base of its own; one level only")
        data = _merge(base, data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            sys.exit(f"pipeline: override '{item}' is not key=value")
        node = data
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = yaml.safe_load(raw)
    try:
        return build(PipelineConfig, data, path, lines=lines)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="experiment YAML, e.g. configs/tiny_cpu.yaml")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. iterations=1 train.reference=sft")
    ap.add_argument("--dry-run", action="store_true", help="print the stage commands, run nothing")
    args = ap.parse_args(argv)
    stop_on_sigterm()
    Runner(load(args.config, args.overrides), args.dry_run).run()


if __name__ == "__main__":
    main()
