#!/usr/bin/env bash
# The paper's online iterative loop: SFT -> 3 x (generate, grade, pairs, M-DPO/M-KTO, evaluate) -> tables.
#
#   bash scripts/run_iterative.sh configs/tiny_cpu.yaml [key=value ...] [--dry-run]
#
# Re-running the same command resumes: finished stages are skipped, interrupted ones continue.
# `--dry-run` prints every stage command, for driving the stages by hand. Configs: configs/*.yaml.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  [ -x .venv-inference/bin/python ] && exec .venv-inference/bin/python scripts/pipeline.py --help
  sed -n '2,8p' "$0"; exit 0
fi
case " $* " in *" --dry-run "*) ;; *) bash scripts/setup_envs.sh ;; esac  # idempotent: seconds when ready
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0} TOKENIZERS_PARALLELISM=false
exec .venv-inference/bin/python scripts/pipeline.py "$@"
