"""Shared fixtures: the tiny world, and ONE short tiny SFT run through SFT/train.sh for every test
that needs a trained model (axolotl's start-up alone takes a minute here)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from SFT.tests.helpers import CONFIGS, run_train, world_overrides

# Test-sized run: 40 steps on 1000 trajectories, a checkpoint every 20 (the resume test restarts
# from the first). The config itself is sized for convergence; see SFT/README.md.
TEST_STEPS = 40
TEST_OVERRIDES = ["datasets.0.split=train[:1000]", f"max_steps={TEST_STEPS}", "saves_per_epoch=null",
                  "save_steps=20", "save_total_limit=2", "warmup_steps=5", "logging_steps=5"]


@dataclass
class TinyRun:
    out: Path
    overrides: list[str]
    log: str
    seconds: float


@pytest.fixture(scope="session")
def tiny_run(tiny_world, tmp_path_factory) -> TinyRun:
    out = tmp_path_factory.mktemp("sft") / "tiny"
    overrides = world_overrides(tiny_world, out) + TEST_OVERRIDES
    start = time.time()
    proc = run_train(str(CONFIGS / "tiny_cpu.yaml"), *overrides)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    return TinyRun(out, overrides, log, time.time() - start)
