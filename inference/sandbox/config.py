"""Settings of the code sandbox (nested as `sandbox:` in the generator's YAML config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..cpus import usable_cpus


@dataclass
class SandboxConfig:
    mode: Literal["persistent", "replay"] = field(default="persistent", metadata={"help": (
        "persistent: one live IPython shell per trajectory across turns; replay: the reference's "
        "strategy, a fresh shell re-runs every earlier cell of the trajectory at each turn (the "
        "observation is the last cell's output). Both give identical observations for "
        "deterministic code (tested).")})
    timeout_s: float = field(default=20.0, metadata={"help": (
        "wall-clock seconds per execution (in replay mode: for the whole replay, as in the "
        "reference); reference PythonExecutor: timeout_length=20")})
    kill_grace_s: float = field(default=1.0, metadata={"help": (
        "after timeout_s the cell gets TimeoutError; code that ignores it is killed this many "
        "seconds later")})
    memory_mb: int = field(default=2048, metadata={"help": (
        "address space each process of a trajectory may add to the pre-warmed interpreter "
        "(RLIMIT_AS); the reference had no limit")})
    disk_mb: int = field(default=256, metadata={"help": (
        "size of the private working directory (a tmpfs) and the largest file (RLIMIT_FSIZE)")})
    cpu_s: int = field(default=120, metadata={"help": (
        "CPU seconds per process of a trajectory over all its turns (RLIMIT_CPU); "
        "6 turns x 20 s (paper: H=6)")})
    max_procs: int = field(default=64, metadata={"help": (
        "processes and threads a trajectory may run at once (RLIMIT_NPROC, per-trajectory uid)")})
    max_output_chars: int = field(default=100_000, metadata={"help": (
        "truncate observations longer than this to their first and last half, joined by '...'; "
        "0 = unlimited, as in the reference. The default only stops runaway output (one "
        "`print('x' * 10**8)` would put 100 MB into the next prompt and the JSONL): a trajectory "
        "is cut at 2048 tokens (SPEC 1.3), and 100,000 characters fit in 2048 tokens only if "
        "they average 49 characters a token (program output: 2-4), so no trajectory the paper "
        "could keep changes. ToRA used 400, the authors' June 2024 code 800")})
    workers: int = field(default_factory=usable_cpus, metadata={"help": (
        "cells executing at once (more wait their turn; their timeout starts when they run); "
        "open sessions are not limited by this")})
    prestarted: int = field(default=16, metadata={"help": (
        "idle, already-isolated worker processes kept ready for new trajectories (a few MB each)")})
    forkers: int = field(default=2, metadata={"help": (
        "processes forking new workers in parallel (each shares the pre-warmed interpreter's memory)")})
    isolation: Literal["auto", "require", "off"] = field(default="auto", metadata={"help": (
        "auto: use every layer the OS allows and warn once about missing ones; require: fail if "
        "any is missing; off: process, rlimits, private directory and scrubbed environment only "
        "(the code can still read other processes' environments through /proc)")})
    env_keep: list[str] = field(default_factory=lambda: ["PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ"],
                                metadata={"help": (
        "environment variables passed to the code; everything else (tokens, credentials) is "
        "dropped")})
