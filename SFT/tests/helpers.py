"""Helpers for the SFT tests: launching SFT/train.sh as a user would, offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SH = ROOT / "SFT" / "train.sh"
CONFIGS = ROOT / "SFT" / "configs"


def sft_env() -> dict[str, str]:
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                WANDB_MODE="disabled", AXOLOTL_DO_NOT_TRACK="1", TOKENIZERS_PARALLELISM="false",
                SFT_PYTHON=sys.executable, NPROC="1")


def run_train(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(TRAIN_SH), *args], cwd=ROOT, env=sft_env(), text=True,
                          capture_output=True, timeout=timeout)


def world_overrides(world: Path, out: Path) -> list[str]:
    return [f"base_model={world / 'model'}", f"datasets.0.path={world / 'data' / 'sft.jsonl'}",
            f"output_dir={out}"]
