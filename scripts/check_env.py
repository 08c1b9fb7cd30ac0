"""Check that one stage environment can do its job: its packages import, the repository's packages
import from any folder, and (on a GPU node) torch sees the GPUs. Run with the environment's python:

    .venv-inference/bin/python scripts/check_env.py inference [--gpus N] [--flash-attn] [--find-only]

Stdlib only at module level: it must run in every environment, even a half-installed one. Exit 0
when everything is there, 1 with one line per problem, each saying what to do.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys

STAGE_MODULES = {  # the third-party packages each stage imports, then the repository's own
    "sft": ["torch", "axolotl", "deepspeed", "transformers", "datasets", "accelerate", "formats", "SFT"],
    "inference": ["torch", "vllm", "IPython", "sympy", "math_verify", "transformers", "datasets", "formats",
                  "inference"],
    "alignment": ["torch", "trl", "deepspeed", "accelerate", "transformers", "peft", "datasets", "formats",
                  "alignment_algorithms"],
}
OWN = {"formats", "SFT", "inference", "alignment_algorithms"}
# The default torch 2.13.0 / vllm 0.32.0 wheels on PyPI are CUDA 13.0 builds (nvidia-cuda-runtime 13.0.x).
DRIVER_HINT = ("the default CUDA 13.0 build needs NVIDIA driver >= 580.65.06; with an older driver reinstall "
               "with TORCH_CUDA=cu128 bash scripts/setup_envs.sh (driver >= 570.26)")


def driver_version() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (nvidia-smi not found)"
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


def check(stage: str, gpus: int, flash_attn: bool, find_only: bool) -> list[str]:
    env = f".venv-{stage}"
    reinstall = f"bash scripts/setup_envs.sh {stage}"
    modules = STAGE_MODULES[stage] + (["flash_attn"] if flash_attn else [])
    problems = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
            if found and not find_only:
                importlib.import_module(name)
        except Exception as exc:  # an import can fail in any way (missing .so, CUDA mismatch, ...)
            problems.append(f"{env}: `import {name}` fails ({type(exc).__name__}: {str(exc)[:300]}); "
                            f"reinstall: rm {env}/.installed && {reinstall}")
            continue
        if not found:
            if name in OWN:
                fix = f"the repository is not installed in {env} (editable): rm {env}/.installed && {reinstall}"
            elif name == "flash_attn":
                fix = ("the SFT config uses attn_implementation: flash_attention_2: FLASH_ATTN=1 bash "
                       "scripts/setup_envs.sh sft (compiles flash-attn, up to an hour), or train with PyTorch's "
                       "attention: sft.overrides=[attn_implementation=sdpa]")
            else:
                fix = f"rm {env}/.installed && {reinstall}"
            problems.append(f"{env}: package `{name}` is not installed; {fix}")
    if gpus > 0 and not find_only:
        try:
            import torch
        except Exception:  # reported above
            return problems
        seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if seen < gpus:
            problems.append(
                f"{env}: torch {torch.__version__} (CUDA {torch.version.cuda}) sees {seen} GPU(s), {gpus} needed "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}, driver "
                f"{driver_version()}); {DRIVER_HINT}"
                if torch.version.cuda else
                f"{env}: torch {torch.__version__} is a CPU build on a GPU node; reinstall: rm {env}/.installed && "
                f"{reinstall} (without FORCE_CPU=1)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=sorted(STAGE_MODULES))
    ap.add_argument("--gpus", type=int, default=0, help="GPUs torch must see (0: do not check)")
    ap.add_argument("--flash-attn", action="store_true", help="flash_attn must import too")
    ap.add_argument("--find-only", action="store_true", help="only check that the packages are installed (fast)")
    args = ap.parse_args(argv)
    os.chdir("/")  # the repository's packages must import from any folder, not only from its root
    sys.path[:] = [p for p in sys.path if p not in ("", ".")]
    problems = check(args.stage, args.gpus, args.flash_attn, args.find_only)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
