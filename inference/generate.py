"""Multi-turn, tool-integrated trajectory generation (the paper's loop, SPEC section 1).

At each turn the model continues the conversation until the end of its turn or "```output".
A turn with a ```python block and no \\boxed{} answer sends its code to the sandbox, and the
result comes back as the user turn "```output\\n{observation}\\n```". A trajectory ends at a
\\boxed{} answer, at a turn with neither code nor answer, or after H turns (then the reference's
"Reach max function call limit." is its last assistant turn); the paper's caps of 512 tokens per
turn and 2048 per trajectory are enforced (the reference ignored them, SPEC 8.10).

Trajectories advance independently: each is its own task, so one whose code is running never
holds back the others (the reference waits for the whole batch at every turn). Every finished
trajectory is appended to the output JSONL at once (formats/trajectory.py); re-running the same
command after an interruption, even SIGKILL, completes the file with no duplicate and no loss.

    python -m inference.generate --config inference/configs/generate_tiny.yaml
    python -m inference.generate --config inference/configs/generate_gemma_eval.yaml \\
        model=runs/iter3/model output=runs/eval/gsm8k.jsonl

Several runs of one model can share one engine, which then starts once (minutes for a 7B model on
a GPU node, tens of seconds on CPU); the pipeline runs each model's evaluation and its sampling
for the next iterations this way. Each run has its own config, overrides and output:
    python -m inference.generate --config eval.yaml output=a.jsonl --and --config collect.yaml output=b.jsonl
Runs that cannot share an engine (another model, tokenizer or `backend` section, e.g. float32 for
evaluation and bfloat16 for sampling) get one engine each, one after the other.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
import re
import sys
import time
import zlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm import tqdm

from formats import FormatError, append_jsonl, iter_jsonl
from formats.config import parse_cli, to_dict
from formats.trajectory import FORMAT_VERSION, MAX_CALLS_MARKER, validate
from inference.backends import BackendConfig, BackendError, Completion, TurnRequest, make_backend
from inference.grading.extract import extract_answer
from inference.problems import DataConfig, DataError, Problem, load_problems
from inference.prompts import PromptError, PromptFormat, make_format, observation_content
from inference.sandbox import Sandbox, SandboxConfig, Session

log = logging.getLogger("inference.generate")
SEPARATOR = "--and"  # between the argument lists of runs that share one engine


@dataclass
class SamplingConfig:
    # SPEC 1.7: the authors' collection runs sampled at T=1.0 (evaluation configs set 0: greedy).
    temperature: float = field(default=1.0, metadata={"help": "0 = greedy"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling (the reference hard-coded 1.0)"})
    top_k: int = field(default=-1, metadata={"help": "-1 = off (reference)"})
    n: int = field(default=1, metadata={"help": "samples per problem, each with its own seed"})
    seed: int = field(default=0, metadata={"help": "base seed; sample k of problem idx gets its own"})
    max_tokens_per_turn: int = field(default=512, metadata={"help": "paper: 512 tokens per turn"})
    max_tokens_per_trajectory: int = field(
        default=2048, metadata={"help": (
            "paper: 2048 tokens per trajectory (prompt, turns, observations); 0 = no cap but the model's "
            "context (the official scripts, SPEC 1.1)")})


@dataclass
class GenerateConfig:
    model: str = field(default="", metadata={"help": "model folder or Hub id (required)"})
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder; default: model"})
    prompt_format: Literal["chat_template", "gemma", "mistral", "llama3", "deepseek"] = field(
        default="chat_template", metadata={
            "help": "chat_template (the tokenizer's), or one of the reference's literal formats"})
    data: DataConfig = field(default_factory=DataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    horizon: int = field(default=6, metadata={"help": "H, the most model turns (paper: H=6)"})
    backend: BackendConfig = field(default_factory=BackendConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    output: str = field(default="", metadata={"help": "JSONL to append to (required); resumed if present"})
    source: str = field(default="current", metadata={
        "help": "label of the model in a sampling mixture (e.g. current, previous)"})
    max_active: int = field(default=256, metadata={
        "help": "trajectories in flight at once (each may hold a sandbox session)"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})


def sample_seed(base: int, idx: str, sample: int) -> int:
    """Sample k of problem idx gets its own seed (the reference sent one seed to every copy,
    SPEC 8.11), independent of --start/--end and of the order trajectories run in."""
    digest = hashlib.sha256(f"{base}:{idx}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def python_blocks(turn: str) -> list[str]:
    """The ```python blocks of one turn, in order; an unclosed last block runs to the end."""
    blocks, current = [], None
    for line in turn.split("\n"):
        if "```python" in line:
            if current is not None:
                blocks.append("\n".join(current))
            current = []
        elif current is not None and line.startswith("```"):
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        blocks.append("\n".join(current))
    return blocks


@dataclass
class Limits:
    horizon: int
    per_turn: int
    per_trajectory: int
    context: int | None


class Trajectory:
    """One conversation's state; drivers alternate `request` / `take_turn` / `observe`."""

    def __init__(self, problem: Problem, sample: int, seed: int, fmt: PromptFormat, limits: Limits):
        self.problem, self.sample, self.seed = problem, sample, seed
        self.id = f"{problem.idx}:{sample}"
        self.fmt, self.limits = fmt, limits
        self.messages = [{"role": "user", "content": fmt.user_content(problem.question)}]
        self.text = fmt.render(self.messages)
        self.ids = fmt.encode(self.text)
        self.prompt_tokens = len(self.ids)
        self.generated_tokens = 0
        self.turns = 0
        self.stop_reason: str | None = None
        self.error: str | None = None
        self._raw_turn = ""
        self._cut_by = "max_tokens"

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def request(self, sampling: SamplingConfig) -> TurnRequest | None:
        """The next model call; None when the trajectory is done, or the caps leave no room."""
        if self.done:
            return None
        lim, used = self.limits, len(self.ids)
        room_traj = lim.per_trajectory - used
        room_ctx = (lim.context - used) if lim.context else room_traj
        self._cut_by = "context" if room_ctx < min(room_traj, lim.per_turn) else "max_tokens"
        room = min(lim.per_turn, room_traj, room_ctx)
        if room <= 0:
            if self._cut_by == "context":
                log.warning("trajectory %s: prompt has %d tokens, the model's context is %d; "
                            "recorded with stop_reason 'context'", self.id, used, lim.context)
            self.stop_reason = self._cut_by
            return None
        turn_seed = (self.seed + 1_000_003 * self.turns) & 0x7FFFFFFF
        return TurnRequest(
            request_id=f"{self.id}#{self.turns}", prompt_ids=self.ids, max_tokens=room,
            temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k,
            seed=turn_seed, stop=self.fmt.stop, stop_token_ids=self.fmt.stop_token_ids,
            affinity=zlib.crc32(self.id.encode()))

    def take_turn(self, completion: Completion) -> list[str]:
        """Record the model's turn; returns the programs to run (empty: the trajectory ended)."""
        self._raw_turn = completion.text
        # A template that writes a separator before the reply (" " in FastChat's Mistral) adds it again
        # when the conversation is rendered: the content must not carry it twice.
        turn = completion.text.rstrip().removeprefix(self.fmt.reply_prefix)
        self.messages.append({"role": "assistant", "content": turn})
        self.turns += 1
        self.generated_tokens += completion.n_tokens
        if "boxed" in turn:  # the reference's test (SPEC 1.3): code next to an answer never runs
            self.stop_reason = "answer"
        elif completion.finish_reason == "length":  # a cut-off program is not run
            self.stop_reason = self._cut_by
        elif "```python" in turn:
            return python_blocks(turn)
        else:
            self.stop_reason = "no_code"
        return []

    def observe(self, observation: str) -> None:
        """Append the tool's answer; at the H-th turn close with the reference's marker."""
        previous = self.text
        self.messages.append({"role": "user", "content": observation_content(observation)})
        if self.turns >= self.limits.horizon:
            self.messages.append({"role": "assistant", "content": MAX_CALLS_MARKER})
            self.stop_reason = "max_turns"
            return
        self.text = self.fmt.next_prompt(previous, self._raw_turn, self.messages)
        self.ids = self.fmt.encode(self.text)

    def fail(self, error: str) -> None:
        self.stop_reason, self.error = "failed", error

    def record(self, model: str, sampling: dict, source: str) -> dict:
        p = self.problem
        last = next((m["content"] for m in reversed(self.messages) if m["role"] == "assistant"), "")
        rec = {
            "id": self.id, "idx": p.idx, "sample": self.sample, "question": p.question,
            "gt": p.gt, "gt_cot": p.gt_cot, "messages": self.messages,
            "pred": extract_answer(last) if last else "", "stop_reason": self.stop_reason,
            "turns": self.turns, "prompt_tokens": self.prompt_tokens,
            "generated_tokens": self.generated_tokens, "model": model, "seed": self.seed,
            "sampling": sampling, "source": source, "extra": p.extra, "error": self.error,
            "format_version": FORMAT_VERSION,
        }
        return validate(rec, "<generated>")


class Tools:
    """One sandbox session per trajectory; sessions are driven from threads so the event loop
    (and with it the engine) never waits on code."""

    def __init__(self, sandbox: Sandbox, threads: int):
        self.sandbox = sandbox
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="tool")
        self._sessions: dict[str, Session] = {}

    def _run(self, key: str, programs: list[str]) -> str:
        session = self._sessions.get(key) or self._sessions.setdefault(key, self.sandbox.session())
        text = ""
        for program in programs:  # as in the reference, the last program's output is shown
            text = session.run(program).text
        return text

    def _close(self, key: str) -> None:
        session = self._sessions.pop(key, None)
        if session is not None:
            session.close()

    async def run(self, key: str, programs: list[str]) -> str:
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._run, key, programs)

    async def close(self, key: str) -> None:
        if key in self._sessions:
            await asyncio.get_running_loop().run_in_executor(self.pool, self._close, key)

    def shutdown(self) -> None:
        for key in list(self._sessions):
            self._close(key)
        self.pool.shutdown(wait=True)


async def roll_out(traj: Trajectory, backend, tools: Tools, sampling: SamplingConfig) -> Trajectory:
    """Drive one trajectory to its end; a failed request or program fails only this one."""
    try:
        while (req := traj.request(sampling)) is not None:
            programs = traj.take_turn(await backend.complete(req))
            if not programs:
                break
            try:
                observation = await tools.run(traj.id, programs)
            except Exception as exc:  # the sandbox's own failure, not the program's
                traj.fail(f"sandbox: {type(exc).__name__}: {exc}")
                break
            traj.observe(observation)
    except BackendError as exc:
        if exc.fatal:
            raise
        traj.fail(str(exc))
    finally:
        await tools.close(traj.id)
    return traj


def sampling_record(cfg: GenerateConfig) -> dict:
    """What a record says about how it was sampled; a resumed file must match it exactly."""
    return {**to_dict(cfg.sampling), "horizon": cfg.horizon, "prompt_format": cfg.prompt_format}


def lock_holder(fh) -> str:
    """Who holds the flock on an open file, from /proc/locks (Linux), as 'process PID (COMMAND)'."""
    st = os.fstat(fh.fileno())
    inode = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks") as locks:
            pids = [line.split()[4] for line in locks if line.split()[1:2] == ["FLOCK"] and inode in line.split()]
        pid = next(p for p in pids if p != str(os.getpid()))
        with open(f"/proc/{pid}/cmdline", "rb") as cmd:
            command = cmd.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except (OSError, StopIteration, IndexError):
        return "the other process could not be identified"
    return f"process {pid} ({command[:200]})"


class Output:
    """The append-only JSONL: locked against a second writer, resumed from what it holds."""

    def __init__(self, path: str, model: str, sampling: dict, source: str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - closed in close()
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SystemExit(f"error: another run is writing to {self.path}: {lock_holder(self.fh)}; "
                             "wait for it to finish or stop it") from None
        self._drop_partial_line()
        self.done = self._read_done(model, sampling, source)

    def _drop_partial_line(self) -> None:
        """A SIGKILL during a write can leave half a line; it was never a finished record."""
        self.fh.seek(0)
        data = self.fh.buffer.read()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            log.warning("%s: dropping an incomplete last line (an interrupted write)", self.path)
            self.fh.truncate(keep)
        self.fh.seek(0, 2)

    def _read_done(self, model: str, sampling: dict, source: str) -> set[str]:
        done = set()
        try:
            for line, rec in iter_jsonl(self.path):
                validate(rec, str(self.path), line)
                if (rec["model"], rec["sampling"], rec.get("source")) != (model, sampling, source):
                    raise SystemExit(
                        f"error: {self.path}, line {line}: written by another configuration (model "
                        f"{rec['model']!r}, source {rec.get('source')!r}, sampling {rec['sampling']}); "
                        "use a new output path")
                done.add(rec["id"])
        except FormatError as exc:
            raise SystemExit(f"error: cannot resume: {exc}") from None
        return done

    def write(self, record: dict) -> None:
        append_jsonl(self.fh, record)

    def close(self) -> None:
        self.fh.close()


def load_tokenizer(cfg: GenerateConfig):
    from transformers import AutoTokenizer, GenerationConfig

    source = cfg.tokenizer or cfg.model
    if not Path(source).exists() and not re.fullmatch(r"[\w.-]+/[\w.-]+", source):
        raise SystemExit(f"error: model {source!r}: no such folder, and not a Hugging Face Hub id")
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot load the tokenizer of {source!r}: {exc}") from None
    try:
        eos = GenerationConfig.from_pretrained(cfg.model).eos_token_id
    except (OSError, ValueError):
        eos = None
    eos_ids = eos if isinstance(eos, list) else [eos] if eos is not None else []
    return tokenizer, eos_ids


@dataclass
class RunStats:
    stop_reasons: Counter = field(default_factory=Counter)
    tokens: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        n, s = sum(self.stop_reasons.values()), max(self.seconds, 1e-9)
        return (f"{n} trajectories in {self.seconds:.0f} s ({n / s:.2f} traj/s, {self.tokens / s:.0f} "
                f"generated tok/s); stop reasons: {dict(self.stop_reasons)}")


@dataclass
class Job:
    """One run's config, its output file, and the (problem, sample) pairs it still lacks."""

    cfg: GenerateConfig
    fmt: PromptFormat
    out: Output
    todo: list[tuple[Problem, int]]


def engine_key(cfg: GenerateConfig) -> str:
    """Runs that agree on this can share one engine."""
    return repr((cfg.model, cfg.tokenizer or cfg.model, cfg.backend))


async def generate_async(cfg: GenerateConfig, backend=None) -> RunStats:
    """Generate every trajectory missing from `cfg.output`. A `backend` passed in is used and
    left open (tests and benchmarks share one engine); otherwise one is made and closed."""
    return (await generate_many([cfg], backend))[0]


async def generate_many(cfgs: list[GenerateConfig], backend=None) -> list[RunStats]:
    """Several runs of one model on one engine, side by side (e.g. the test sets and the next
    iterations' prompts): the engine starts once, and each run's trajectories fill the others' gaps."""
    for cfg in cfgs:
        check(cfg)
    if len({engine_key(c) for c in cfgs}) > 1:
        raise SystemExit("error: runs sharing one engine must agree on model, tokenizer and backend")
    outputs = [str(Path(c.output).resolve()) for c in cfgs]
    if len(set(outputs)) < len(outputs):
        raise SystemExit("error: two runs write to the same output file")
    tokenizer, eos_ids = load_tokenizer(cfgs[0])
    jobs: list[Job] = []
    try:
        for cfg in cfgs:
            try:
                fmt = make_format(cfg.prompt_format, tokenizer, eos_ids, cfg.tokenizer or cfg.model)
                problems = load_problems(cfg.data)
            except (PromptError, DataError) as exc:
                raise SystemExit(f"error: {exc}") from None
            out = Output(cfg.output, cfg.model, sampling_record(cfg), cfg.source)
            jobs.append(Job(cfg, fmt, out, [(p, k) for p in problems for k in range(cfg.sampling.n)
                                             if f"{p.idx}:{k}" not in out.done]))
            log.info("%d problems x %d samples; %d to generate into %s", len(problems), cfg.sampling.n,
                     len(jobs[-1].todo), out.path)
        if not any(job.todo for job in jobs):
            return [RunStats() for _ in jobs]
        own = backend is None
        if own:
            first = cfgs[0]
            backend = make_backend(first.backend, first.model, first.tokenizer, tokenizer, first.sampling.seed)
        try:
            if hasattr(backend, "start"):
                await backend.start()
            return list(await asyncio.gather(*(_drive(job, backend, position=i) for i, job in enumerate(jobs))))
        finally:
            if own:
                backend.close()
    finally:
        for job in jobs:
            job.out.close()


async def _drive(job: Job, backend, position: int = 0) -> RunStats:
    cfg, todo, fmt, out = job.cfg, job.todo, job.fmt, job.out
    if not todo:
        return RunStats()
    limits = Limits(cfg.horizon, cfg.sampling.max_tokens_per_turn,
                    cfg.sampling.max_tokens_per_trajectory or sys.maxsize, backend.max_model_len)
    sampling = sampling_record(cfg)
    queue: asyncio.Queue = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    stats = RunStats()
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
    bar = tqdm(total=len(todo), unit="traj", disable=not cfg.progress, dynamic_ncols=True, position=position,
               desc=Path(cfg.output).name)
    start = time.monotonic()
    loop = asyncio.get_running_loop()

    async def worker(tools: Tools) -> None:
        while not queue.empty():
            problem, k = queue.get_nowait()
            traj = Trajectory(problem, k, sample_seed(cfg.sampling.seed, problem.idx, k), fmt, limits)
            await roll_out(traj, backend, tools, cfg.sampling)
            record = traj.record(cfg.model, sampling, cfg.source)
            await loop.run_in_executor(writer, out.write, record)
            stats.stop_reasons[traj.stop_reason] += 1
            stats.tokens += traj.generated_tokens
            bar.update(1)
            bar.set_postfix(tok_s=f"{stats.tokens / max(time.monotonic() - start, 1e-9):.0f}",
                            refresh=False)

    try:
        with Sandbox(cfg.sandbox) as sandbox:
            # Isolated workers get ready while the model writes the first turns (benchmarks/RESULTS.md).
            sandbox.prestart(min(cfg.max_active, len(todo)))
            tools = Tools(sandbox, cfg.max_active)
            try:
                async with asyncio.TaskGroup() as group:  # a fatal error cancels every worker
                    for _ in range(min(cfg.max_active, len(todo))):
                        group.create_task(worker(tools))
            finally:
                tools.shutdown()
    finally:
        bar.close()
        writer.shutdown(wait=True)
    stats.seconds = time.monotonic() - start
    return stats


def check(cfg: GenerateConfig) -> None:
    problems = [name for name, bad in (
        ("model", not cfg.model), ("output", not cfg.output), ("horizon (>= 1)", cfg.horizon < 1),
        ("sampling.n (>= 1)", cfg.sampling.n < 1), ("max_active (>= 1)", cfg.max_active < 1),
        ("sampling.max_tokens_per_turn (>= 1)", cfg.sampling.max_tokens_per_turn < 1),
        ("sampling.temperature (>= 0)", cfg.sampling.temperature < 0)) if bad]
    if problems:
        raise SystemExit(f"error: set {', '.join(problems)}")


def run(cfg: GenerateConfig) -> RunStats:
    return run_many([cfg])[0]


def engine_groups(cfgs: list[GenerateConfig]) -> list[list[int]]:
    """Indices of the runs that share an engine (same `engine_key`), in order of first appearance:
    the one definition of "same engine" (the pipeline passes all of a model's runs with `--and`)."""
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        groups.setdefault(engine_key(cfg), []).append(i)
    return list(groups.values())


async def _generate_grouped(cfgs: list[GenerateConfig]) -> list[RunStats]:
    outputs = [str(Path(c.output).resolve()) for c in cfgs]
    if len(set(outputs)) < len(outputs):
        raise SystemExit("error: two runs write to the same output file")
    stats: list[RunStats] = [RunStats()] * len(cfgs)
    for group in engine_groups(cfgs):  # one engine at a time: each may take every GPU
        for i, s in zip(group, await generate_many([cfgs[i] for i in group]), strict=True):
            stats[i] = s
    return stats


def run_many(cfgs: list[GenerateConfig]) -> list[RunStats]:
    """Runs side by side, one engine start per group of runs that can share it."""
    try:
        return asyncio.run(_generate_grouped(cfgs))
    except (BackendError, ExceptionGroup) as exc:
        errors = exc.exceptions if isinstance(exc, ExceptionGroup) else (exc,)
        fatal = [e for e in errors if isinstance(e, BackendError)]
        if not fatal:
            raise
        raise SystemExit(f"error: {fatal[0]} (finished trajectories are saved; re-run to resume)") from None


def split_runs(argv: list[str]) -> list[list[str]]:
    """`A --and B --and C`: the argument lists of runs that share one engine."""
    runs: list[list[str]] = [[]]
    for arg in argv:
        if arg == SEPARATOR:
            runs.append([])
        else:
            runs[-1].append(arg)
    return runs


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfgs = [parse_cli(GenerateConfig, args, __doc__) for args in split_runs(sys.argv[1:] if argv is None else argv)]
    for cfg, stats in zip(cfgs, run_many(cfgs), strict=True):
        print(f"{cfg.output}: wrote {stats}", file=sys.stderr)


if __name__ == "__main__":
    main()
