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
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[1]
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")  # owner/name
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from formats import heldout  # noqa: E402
from formats.checkpoints import checkpoints, has_weights  # noqa: E402
from formats.config import ConfigError, apply_overrides, build, merge, read_yaml  # noqa: E402
from inference.processes import die_with_parent, stop  # noqa: E402
from scripts.rehearsal import RehearsalScale  # noqa: E402

VENV = {"inference": ROOT / ".venv-inference", "alignment": ROOT / ".venv-alignment", "sft": ROOT / ".venv-sft"}
STAGE_SCRIPTS = {"sft": "SFT/train.sh", "generate": "inference/generate.sh", "grade": "inference/grade.sh",
                 "pairs": "inference/pairs.sh", "train": "alignment_algorithms/train.sh"}


def stop_on_sigterm() -> None:
    """SIGTERM (a scheduler's time limit, `kill`) unwinds like Ctrl-C, through run_stage's cleanup."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def _tee(source: int, log: Path) -> None:
    """Copies a stage's output to the terminal and to its log file as it comes (progress bars too)."""
    out = getattr(sys.stdout, "buffer", None)
    with open(log, "ab") as fh:
        while chunk := os.read(source, 65536):
            fh.write(chunk)
            fh.flush()
            if out is not None:
                out.write(chunk)
                out.flush()
            else:
                sys.stdout.write(chunk.decode(errors="replace"))


def run_stage(cmd: list[str], env: dict, log: Path | None = None) -> int:
    """Runs one stage, its output (stdout and stderr) also appended to `log`; if the pipeline is
    interrupted (Ctrl-C, SIGTERM), the stage's whole process group (the stage script and what it
    started: a trainer, torchrun's workers) is asked to stop (SIGTERM, then SIGKILL after 30 s)
    before the pipeline exits, so a re-run never races it."""
    parent = os.getpid()  # the kernel ends the stage if the pipeline dies, even by SIGKILL (Linux)
    pipe = subprocess.PIPE if log else None
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**env, "PYTHONUNBUFFERED": "1"} if log else env, stdout=pipe,
                            stderr=subprocess.STDOUT if log else None,
                            start_new_session=True, preexec_fn=lambda: die_with_parent(signal.SIGTERM, parent))
    copier = None
    if log:
        copier = threading.Thread(target=_tee, args=(proc.stdout.fileno(), log), daemon=True)
        copier.start()
    try:
        returncode = proc.wait()
    except BaseException:
        stop(proc, grace_s=30, group=True)
        raise
    if copier:  # a leftover grandchild holding the pipe must not hold the pipeline
        copier.join(timeout=10)
        proc.stdout.close()
    return returncode


def is_hub_id(value: str | None) -> bool:
    """A config value that names a Hub repository: owner/name, and no such folder in this checkout."""
    return bool(value) and bool(HUB_ID.match(value)) and not (ROOT / value).exists()


@dataclass
class WorldConfig:
    build: bool = field(default=False, metadata={"help": "build the tiny offline world first"})
    seed: int = 0
    args: list[str] = field(default_factory=list, metadata={"help": "extra make_tiny_world.py flags"})
    script: str = field(default="scripts/make_tiny_world.py", metadata={
        "help": "the world builder (a rehearsal's: scripts/rehearsal.py)"})


PREFIX_HELP = ("words put before the stage's command, e.g. [srun, --nodes=1, --ntasks=1] to run it under a "
               "scheduler (scripts/slurm/); empty: run it here")


@dataclass
class SFTConfig:
    model: str = field(default="", metadata={"help": (
        "an SFT model to start from (a folder, '{runs}/<run>/sft/model', or a Hub id); empty: train one")})
    config: str = field(default="SFT/configs/tiny_cpu.yaml", metadata={"help": "axolotl config"})
    base_model: str = field(default="{world}/model", metadata={"help": "model that SFT starts from"})
    data: str = field(default="{world}/data/sft.jsonl", metadata={"help": "SFT messages JSONL"})
    epoch: int = field(default=0, metadata={"help": (
        "M_0 = the SFT run's checkpoint after this epoch (paper: 3 of a 4-epoch run, released as "
        "Gemma-7B-it-SFT3epoch, SPEC 6); 0: the run's final model. Applies to a local SFT run (ours, or `model` "
        "naming its folder); a Hub `model` is taken as it is")})
    mixture_epoch: int = field(default=0, metadata={"help": (
        "iteration 1 also samples the SFT checkpoint after this epoch, as the mixture's previous model "
        "(paper: epochs 1 and 3, SPEC 4.4); 0: iteration 1 samples M_0 only")})
    mixture_model: str = field(default="", metadata={"help": (
        "iteration 1's second sampling model given directly (a folder or Hub id) instead of mixture_epoch")})
    overrides: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list, metadata={"help": PREFIX_HELP})


@dataclass
class GenerateConfig:
    config: str = "inference/configs/generate_tiny.yaml"
    # paper §3.2 / FIELD §4 "Recipe": N=30 per prompt, 20 from the current model, 10 from the previous
    samples_current: int = 20
    samples_previous: int = 10
    overrides: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list, metadata={"help": PREFIX_HELP + " (evaluation included)"})


@dataclass
class StageConfig:
    config: str = ""
    overrides: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list, metadata={"help": PREFIX_HELP})


@dataclass
class TrainConfig:
    algorithm: Literal["mdpo", "mkto", "raft"] = "mdpo"
    config: str = "alignment_algorithms/configs/mdpo_tiny_cpu.yaml"
    # paper: the reference is updated to the previous iteration's model (better than fixed)
    reference: Literal["previous", "sft"] = "previous"
    launcher: list[str] = field(default_factory=list, metadata={"help": (
        "the words before the training script (alignment_algorithms/train.sh's LAUNCHER), looked up in the "
        "alignment environment first: e.g. [accelerate, launch, --config_file, "
        "alignment_algorithms/accelerate/zero2.yaml]; empty: its python")})
    overrides: list[str] = field(default_factory=list)
    prefix: list[str] = field(default_factory=list, metadata={"help": PREFIX_HELP + ", before the launcher"})


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
    # paper App. B: "We evaluate the model every 50 training steps by the split prompt set" (SPEC 5.5, 7)
    selection: Literal["best", "last"] = field(default="best", metadata={"help": (
        "each iteration's model: the checkpoint (one per save_steps of the training config) with the best "
        "`paper` accuracy, greedy with the tool, on the prompts the trainer held out; or the last step")})
    keep_checkpoints: bool = field(default=False, metadata={"help": (
        "keep the checkpoints that selection did not choose (default: deleted once chosen)")})
    rehearse: bool = field(default=False, metadata={"help": (
        "run a GPU config on this CPU machine with stand-in models and data, each substitution printed "
        "(scripts/rehearsal.py)")})
    rehearsal: RehearsalScale = field(default_factory=RehearsalScale, metadata={
        "help": "a rehearsal's scale, e.g. rehearsal.prompts_per_iteration=8 (scripts/rehearsal.py RehearsalScale)"})


@dataclass
class Run:
    """One generation run: a generate config, its overrides and its output file."""

    title: str
    config: str
    output: Path
    overrides: list[str]


class Runner:
    """Runs (or prints) stage commands; a finished stage leaves `.done` and is not run again."""

    def __init__(self, cfg: PipelineConfig, dry_run: bool, env: dict | None = None):
        self.cfg, self.dry_run, self.env = cfg, dry_run, env or {}
        self.run_dir = ROOT / cfg.runs_dir / cfg.name
        self.world = self.run_dir / "world"
        self.log = self.run_dir / "commands.log"
        self.sft_mixture = False  # iteration 1 samples a second SFT checkpoint (sft.mixture_epoch)

    def path(self, template: str) -> str:
        return (template.replace("{world}", str(self.world)).replace("{run}", str(self.run_dir))
                .replace("{runs}", str(self.run_dir.parent)))

    def stage(self, out_dir: Path, title: str, cmd: list[str], env: dict | None = None) -> None:
        done = out_dir / ".done"
        if done.exists():
            print(f"[skip] {title}: done ({out_dir})")
            return
        line = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items()), *map(shlex.quote, cmd)])
        if self.dry_run:
            print(f"# {title}\n{line}\n")
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as fh:
            fh.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n{line}\n")
        print(f"[run ] {title}", flush=True)
        start = time.time()
        logs = self.run_dir / "logs"  # each stage's output, also printed: runs/<name>/logs/<stage>.log
        logs.mkdir(parents=True, exist_ok=True)
        stage_log = logs / (("-".join(out_dir.relative_to(self.run_dir).parts) if out_dir.is_relative_to(self.run_dir)
                              else out_dir.name) + ".log")
        with open(stage_log, "a") as fh:
            fh.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {title}\n{line}\n")
        print(f"[log ] {stage_log}", flush=True)
        returncode = run_stage(cmd, {**os.environ, **self.env, **(env or {})}, stage_log)
        if returncode != 0:
            sys.exit(f"pipeline: stage '{title}' failed (exit {returncode}); fix it and re-run the "
                     f"same command to resume. Command:\n{line}")
        done.write_text(json.dumps({"seconds": round(time.time() - start, 1)}) + "\n")
        print(f"[done] {title} in {time.time() - start:.0f}s", flush=True)

    def py(self, env: str, *args: str) -> list[str]:
        return [str(VENV[env] / "bin" / "python"), *args]

    @staticmethod
    def script(stage: str) -> list[str]:
        """A stage's own script, as a user runs it by hand (it picks the stage's environment)."""
        return ["bash", STAGE_SCRIPTS[stage]]

    # --- stages -------------------------------------------------------------------------
    def build_world(self) -> None:
        w = self.cfg.world
        if w.build:
            self.stage(self.world, f"build the world ({w.script})", self.py(
                "alignment", w.script, "--seed", str(w.seed), "--out", str(self.world), *w.args))

    def sft_model(self) -> str:
        if self.cfg.sft.model:
            model = self.path(self.cfg.sft.model)
            if not self.dry_run and Path(model).is_absolute() and not Path(model).exists():
                sys.exit(f"pipeline: sft.model {model} does not exist (a baseline starts from its main run's SFT "
                         "model: run that first)")
            return model
        out = self.run_dir / "sft"
        s = self.cfg.sft
        self.stage(out, "SFT", [*s.prefix, *self.script("sft"), s.config, f"base_model={self.path(s.base_model)}",
                                f"datasets.0.path={self.path(s.data)}", f"output_dir={out / 'model'}",
                                *s.overrides])
        return str(out / "model")

    def sft_models(self) -> tuple[str, str | None]:
        """M_0 and iteration 1's second sampling model (None: iteration 1 samples M_0 only)."""
        s = self.cfg.sft
        run = self.sft_model()
        second = self.path(s.mixture_model) if s.mixture_model else None
        if s.model and not Path(run).is_absolute():  # a released model (Hub id): its epoch is already chosen
            return run, second
        if second:
            return self.sft_checkpoint(run, s.epoch), second
        return self.sft_checkpoint(run, s.epoch), self.sft_checkpoint(run, s.mixture_epoch) if s.mixture_epoch else None

    def sft_checkpoint(self, run: str, epoch: int) -> str:
        """The checkpoint of the SFT run in folder `run` saved after `epoch` epochs (0: the final model)."""
        if epoch == 0:
            return run
        if self.dry_run and not Path(run).is_dir():
            return f"{run}/<checkpoint after epoch {epoch}>"
        if not Path(run).is_dir():
            sys.exit(f"pipeline: sft.epoch / sft.mixture_epoch pick checkpoints of a local SFT run; {run} is not a "
                     "folder: set them to 0 (and sft.mixture_model for a second model)")
        epochs = {}
        for _, path in checkpoints(run):
            state = path / "trainer_state.json"
            if state.exists():
                epochs[path] = json.loads(state.read_text()).get("epoch") or 0.0
        resolved = Path(run) / "sft_config.yaml"  # SFT/train.sh's resolved config
        if resolved.exists() and (yaml.safe_load(resolved.read_text()) or {}).get("num_epochs") == epoch:
            return run  # the last epoch is the final model (its checkpoint may be missing: see below)
        # Packed batches make epochs a step longer or shorter than planned, so a checkpoint saved
        # "every epoch" can sit at epoch 2.97 or 3.03: take the nearest within a quarter epoch.
        near = sorted((abs(e - epoch), str(path)) for path, e in epochs.items() if abs(e - epoch) < 0.25)
        if not near:
            sys.exit(f"pipeline: the SFT run {run} has no checkpoint after epoch {epoch} (its checkpoints: "
                     f"{sorted(round(e, 2) for e in epochs.values())}); the SFT config must save every epoch "
                     "(saves_per_epoch: 1) and keep them (save_total_limit >= num_epochs)")
        return near[0][1]

    def prompt_file(self, t: int) -> tuple[str, list[str]]:
        """The iteration's prompt file, and the override selecting its share when one file serves all."""
        files = [self.path(p) for p in self.cfg.prompts]
        if len(files) > 1 and len(files) >= self.cfg.iterations:  # iterations=1 on a 3-set config: the first set
            return files[t - 1], []
        if len(files) != 1:
            sys.exit(f"pipeline: 'prompts' needs 1 file or at least {self.cfg.iterations} files, got {len(files)}")
        return files[0], [f"data.share={t}/{self.cfg.iterations}"]  # paper: disjoint prompt sets per iteration

    def grade(self, out: Path, title: str, files: list[Path]) -> None:
        self.stage(out, title, [*self.cfg.grade.prefix, *self.script("grade"), "--config",
                                self.cfg.grade.config, f"files={json.dumps([str(f) for f in files])}",
                                *self.cfg.grade.overrides])

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
        cmd = [*self.cfg.generate.prefix, *self.script("generate")]  # it starts one engine per backend setting
        for j, r in enumerate(runs):
            cmd += [*(["--and"] if j else []), "--config", r.config, *r.overrides, f"output={r.output}"]
        title = f"generate with the {tag} model: " + ", ".join(r.title for r in runs)
        self.stage(self.run_dir / "generate" / tag, title, cmd)
        self.grade(self.run_dir / "eval" / tag / "grade", f"evaluate {tag}: grade",
                   [r.output for r in runs[:len(self.cfg.evaluate.sets)]])

    def iteration(self, t: int, current: str, sft: str) -> str:
        it = self.run_dir / f"iter{t}"
        g = self.cfg.generate
        runs = [{"path": str(self.collection_path(t, "current")), "source": "current",
                 "max_samples_per_prompt": g.samples_current}]
        if (t > 1 or self.sft_mixture) and g.samples_previous > 0:  # the mixture's previous model sampled these
            runs.append({"path": str(self.collection_path(t, "previous")), "source": "previous",
                         "max_samples_per_prompt": g.samples_previous})
        self.grade(it / "grade", f"iteration {t}: grade", [Path(r["path"]) for r in runs])
        pairs = it / "pairs"
        self.stage(pairs, f"iteration {t}: preference data", [
            *self.cfg.pairs.prefix, *self.script("pairs"), "--config", self.cfg.pairs.config,
            f"runs={json.dumps(runs)}", f"tokenizer={current}", f"output={pairs / 'data'}", *self.cfg.pairs.overrides])
        tr = self.cfg.train
        model_out = it / "train" / "model"
        reference = current if tr.reference == "previous" else sft
        # RAFT trains on the chosen side of the pairs, the reference's RAFT set (SPEC 4.4 step 9)
        subset = "kto" if tr.algorithm == "mkto" else "dpo"
        stats = pairs / "data" / "stats.json"
        data = {} if self.dry_run else json.loads(stats.read_text())
        if data and (data[subset]["rows"] == 0 or data[subset].get("prompts", 2) < 2):
            # A tiny model can fail every prompt: no preference signal, so nothing to train on. Pairs of one
            # prompt cannot be split into training and held-out prompts (selection, evaluation loss) either.
            what = f"no {subset} rows" if data[subset]["rows"] == 0 else \
                f"{subset} rows of one prompt only (the trainer holds whole prompts out: it needs two)"
            note = f"iteration {t}: the preference data has {what} (see {stats}); the model is carried over unchanged"
            print(f"[warn] {note}", flush=True)
            (it / "train").mkdir(parents=True, exist_ok=True)
            (it / "train" / "NO_DATA").write_text(note + "\n")
            return current
        self.stage(it / "train", f"iteration {t}: {tr.algorithm.upper()}", [
            *tr.prefix, *self.script("train"), tr.algorithm, "--config", tr.config, f"model_name_or_path={current}",
            *([] if tr.algorithm == "raft" else [f"ref_model_name_or_path={reference}"]),  # RAFT: no reference
            f"dataset_path={pairs / 'data' / subset}", f"output_dir={model_out}", *tr.overrides],
            env={"LAUNCHER": shlex.join(tr.launcher)} if tr.launcher else None)
        return self.select(t, model_out)

    def select(self, t: int, trained: Path) -> str:
        """Iteration t's model, recorded in iter<t>/select/selection.json: the final step (`selection:
        last`), or the checkpoint with the best `paper` accuracy on the prompts the trainer held out,
        greedy with the tool as in evaluation (ties: the later step). All checkpoints are evaluated in
        one stage, one engine each; then the unchosen ones are deleted (unless keep_checkpoints)."""
        out = self.run_dir / f"iter{t}" / "select"
        record_file = out / "selection.json"
        if self.dry_run:
            if self.cfg.selection == "last":
                return str(trained)
            self.stage(out / "generate", f"iteration {t}: evaluate each checkpoint on the held-out prompts", [
                *self.cfg.generate.prefix, *self.script("generate"), "--config",
                self.cfg.evaluate.config,
                f"model=<{trained}/checkpoint-N, one run each, joined by --and>", *self.heldout_data(t, trained),
                *self.cfg.evaluate.overrides, f"output={out}/step<N>/trajectories.jsonl"])
            self.grade(out / "grade", f"iteration {t}: grade the checkpoints", [out / "step<N>" / "trajectories.jsonl"])
            return str(out / "<chosen checkpoint>")
        if not record_file.exists():
            record_file.parent.mkdir(parents=True, exist_ok=True)
            record = self.evaluate_checkpoints(t, trained, out) if self.cfg.selection == "best" else {
                "selection": "last", "step": json.loads((trained / "alignment_finished.json").read_text())["steps"],
                "model": str(trained)}
            record_file.write_text(json.dumps(record, indent=1) + "\n")
        record = json.loads(record_file.read_text())
        if record["selection"] == "best" and not self.cfg.keep_checkpoints:
            for _, path in checkpoints(trained):
                if str(path) != record["model"]:
                    shutil.rmtree(path)
        print(f"[sel ] iteration {t}: step {record['step']} ({record['selection']}): {record['model']}", flush=True)
        return record["model"]

    def heldout_data(self, t: int, trained: Path) -> list[str]:
        """Generation overrides for the prompts of iteration t that its training held out."""
        data, slice_overrides = self.prompt_file(t)
        return [f"data.path={data}", f"data.name={self.cfg.prompts_data_name}", f"data.split={self.cfg.prompts_split}",
                *slice_overrides, f"data.limit={self.cfg.prompts_per_iteration}",
                f"data.idx_file={trained / heldout.FILE_NAME}"]

    def check_selection(self) -> None:
        """`selection: best` stops before any stage, not after hours of training, if the training
        config leaves nothing to choose from or nothing to choose on."""
        tr = self.cfg.train
        if self.cfg.selection != "best" or not (ROOT / tr.config).exists():
            return
        train_cfg = apply_overrides(read_yaml(ROOT / tr.config)[0], tr.overrides)
        off = ("no", False)  # YAML reads a bare `no` as false
        problems = [why for bad, why in (
            (train_cfg.get("eval_strategy", "no") in off, "eval_strategy=no: no prompts are held out"),
            (train_cfg.get("save_strategy", "steps") in off, "save_strategy=no: no checkpoints"),
            (train_cfg.get("use_peft", False), "use_peft: checkpoints hold LoRA adapters, not models")) if bad]
        if problems:
            sys.exit(f"pipeline: selection: best, but {tr.config} with {tr.overrides}: {'; '.join(problems)}. "
                     "Change the training config, or set selection=last")

    def evaluate_checkpoints(self, t: int, trained: Path, out: Path) -> dict:
        if not (trained / heldout.FILE_NAME).exists():
            sys.exit(f"pipeline: selection: best needs the prompts that iteration {t}'s training held out, and it "
                     f"held out none ({trained / heldout.FILE_NAME} is missing): keep eval_strategy on in "
                     f"{self.cfg.train.config}, or set selection=last")
        final = json.loads((trained / "alignment_finished.json").read_text())["steps"]
        # The final checkpoint holds the saved model's weights: that folder stands for it.
        candidates = {step: path for step, path in checkpoints(trained) if step != final} | {final: trained}
        for path in candidates.values():
            if not has_weights(path):
                sys.exit(f"pipeline: {path} holds no whole model (a LoRA run saves adapters only in its "
                         "checkpoints): set selection=last")
        outputs = {step: out / f"step{step}" / "trajectories.jsonl" for step in candidates}
        cmd = [*self.cfg.generate.prefix, *self.script("generate")]
        for j, (step, path) in enumerate(sorted(candidates.items())):
            cmd += [*(["--and"] if j else []), "--config", self.cfg.evaluate.config, f"model={path}",
                    *self.heldout_data(t, trained), *self.cfg.evaluate.overrides, f"output={outputs[step]}"]
        self.stage(out / "generate", f"iteration {t}: evaluate {len(candidates)} checkpoints on the held-out "
                   "prompts", cmd)
        self.grade(out / "grade", f"iteration {t}: grade the checkpoints", list(outputs.values()))
        scores = {step: json.loads(f.with_name("trajectories.metrics.json").read_text())["accuracy"]["paper"]
                  for step, f in outputs.items()}
        step = max(scores, key=lambda s: (scores[s], s))
        held = heldout.read(trained / heldout.FILE_NAME)["idx"]
        return {"selection": "best", "grader": "paper", "step": step, "final_step": final,
                "model": str(candidates[step]), "heldout_prompts": len(held),
                "accuracy": {str(s): scores[s] for s in sorted(scores)}}

    def run(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.resolved.yaml").write_text(yaml.safe_dump(dataclasses.asdict(self.cfg),
                                                                            sort_keys=False))
        self.check_selection()
        self.build_world()
        sft, mixture = self.sft_models()
        self.generate_with(0, sft)
        self.sft_mixture = mixture is not None and self.cfg.generate.samples_previous > 0
        if self.sft_mixture:  # paper iteration 1: the 1-epoch SFT checkpoint's samples beside M_0's (SPEC 4.4)
            run = self.collection(1, "previous", mixture)
            self.stage(self.run_dir / "generate" / "sft_mixture", f"generate with the second SFT model: {run.title}",
                       [*self.cfg.generate.prefix, *self.script("generate"), "--config", run.config, *run.overrides,
                        f"output={run.output}"])
        current = sft
        for t in range(1, self.cfg.iterations + 1):
            current = self.iteration(t, current, sft)
            self.generate_with(t, current)
        if not self.dry_run:
            subprocess.run(self.py("inference", "scripts/make_tables.py", str(self.run_dir)), cwd=ROOT, check=False)


def load(path: str, overrides: list[str]) -> PipelineConfig:
    """A config may start from another (`base: configs/x.yaml`) and change only what differs."""
    try:
        data, where = read_yaml(path)
        if "base" in data:
            base_path = ROOT / data.pop("base")
            base, base_where = read_yaml(base_path)
            if "base" in base:
                raise ConfigError(f"{path}: {base_path} has a base of its own; one level only")
            data, where = merge(base, data), {**base_where, **where}
        data = apply_overrides(data, overrides, where, PipelineConfig)
        return build(PipelineConfig, data, path, where)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="experiment YAML, e.g. configs/tiny_cpu.yaml")
    ap.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. iterations=1 train.reference=sft")
    ap.add_argument("--dry-run", action="store_true", help="print the stage commands, run nothing")
    args = ap.parse_args(argv)
    stop_on_sigterm()
    cfg, env = load(args.config, args.overrides), {}
    if cfg.rehearse:
        from scripts.rehearsal import rehearse

        cfg, env, substitutions = rehearse(cfg)
        print("rehearsal: substitutions (everything else is the config's own)\n  " + "\n  ".join(substitutions),
              flush=True)
    Runner(cfg, args.dry_run, env).run()


if __name__ == "__main__":
    main()
