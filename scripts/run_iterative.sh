#!/usr/bin/env bash
# The paper's online iterative loop: SFT -> 3 x (generate, grade, pairs, M-DPO/M-KTO, evaluate) -> tables.
#
#   bash scripts/run_iterative.sh configs/tiny_cpu.yaml [key=value ...] [--dry-run] [--skip-preflight]
#
# Re-running the same command resumes: finished stages are skipped, interrupted ones continue.
# `--dry-run` prints every stage command, for driving the stages by hand. Configs: configs/*.yaml.
# scripts/preflight.sh checks the run's needs first (GPUs, environments, Hub, disk, reporting);
# `--skip-preflight` (or preflight=false) skips it. Each stage's output: runs/<name>/logs/<stage>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  [ -x .venv-inference/bin/python ] && exec .venv-inference/bin/python scripts/pipeline.py --help
  sed -n '2,8p' "$0"; exit 0
fi
ARGS=() PREFLIGHT=1 DRY=0
for a in "$@"; do
  case $a in
    --skip-preflight|preflight=false) PREFLIGHT=0 ;;
    --dry-run) DRY=1; ARGS+=("$a") ;;
    *) ARGS+=("$a") ;;
  esac
done
[ $DRY = 1 ] || bash scripts/setup_envs.sh  # idempotent: seconds when ready
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-0} TOKENIZERS_PARALLELISM=false
if [ $DRY = 0 ] && [ $PREFLIGHT = 1 ]; then
  bash scripts/preflight.sh "${ARGS[@]}" || { echo "run_iterative: preflight failed (above); fix the items," \
    "or skip the check with --skip-preflight" >&2; exit 1; }
fi
# wandb asks for a login on a terminal when it has no key: without one it logs offline, never prompts.
[ -n "${WANDB_API_KEY:-}" ] || export WANDB_MODE=${WANDB_MODE:-offline}
exec .venv-inference/bin/python scripts/pipeline.py "${ARGS[@]}"
