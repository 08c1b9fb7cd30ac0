"""Shared fixtures: the tiny world, and ONE short tiny SFT run through SFT/train.sh for every test
that needs a trained model (axolotl's start-up alone takes a minute here). The run is interrupted
once and resumed, as a preempted job is: the resumed run is what every test reads."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from SFT.tests.helpers import CONFIGS, ROOT, TRAIN_SH, run_train, sft_env, world_overrides

# Test-sized run: 40 steps on 1000 trajectories, a checkpoint every 20 (the run is stopped after
# the first and resumed from it). The config itself is sized for convergence; see SFT/README.md.
TEST_STEPS = 40
TEST_OVERRIDES = ["datasets.0.split=train[:1000]", f"max_steps={TEST_STEPS}", "saves_per_epoch=null",
                  "save_steps=20", "save_total_limit=2", "warmup_steps=5", "logging_steps=5"]


@dataclass
class TinyRun:
    out: Path
    overrides: list[str]
    log: str  # the resumed run's
    interrupted: dict  # the first run's exit status and what it left in `out`


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory) -> TinyRun:
    """Stopped for real (SIGTERM to train.sh, as a scheduler or the pipeline stops it) once its
    step-20 checkpoint is written, then the same command again."""
    out = tmp_path_factory.mktemp("sft") / "tiny"
    overrides = world_overrides(tiny_world, out) + TEST_OVERRIDES
    cmd = ["bash", str(TRAIN_SH), str(CONFIGS / "tiny_cpu.yaml"), *overrides]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=sft_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 900
    while not (out / "checkpoint-20" / "trainer_state.json").exists():
        assert proc.poll() is None, "SFT ended before its step-20 checkpoint:\n" + proc.stderr.read()[-6000:]
        assert time.monotonic() < deadline, "no step-20 checkpoint in 900 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # to train.sh, which passes it on to axolotl
    _, stderr = proc.communicate(timeout=120)
    interrupted = {"returncode": proc.returncode, "files": {str(p.relative_to(out)) for p in out.rglob("*")},
                   "stderr": stderr}

    proc = run_train(str(CONFIGS / "tiny_cpu.yaml"), *overrides)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return TinyRun(out, overrides, log, interrupted)
