#!/usr/bin/env bash
# Supervised fine-tuning with axolotl.
#
#   bash SFT/train.sh CONFIG [key=value ...] [--axolotl-arg ...]
#
#   bash SFT/train.sh SFT/configs/gemma-1.1-7b-it.yaml                 # 8 GPUs: torchrun, 8 processes
#   bash SFT/train.sh SFT/configs/tiny_cpu.yaml base_model=runs/w/model \
#        datasets.0.path=runs/w/data/sft.jsonl output_dir=runs/w/sft    # CPU: one process
#
# key=value overrides take dotted paths into lists (datasets.0.path=...), YAML-typed values; they
# are checked with the rest of the config (SFT/check_config.py: schema + unknown keys) and the
# resolved config is saved as <output_dir>/sft_config.yaml. Arguments from the first one starting
# with `--` on go to axolotl unchanged (e.g. --debug). Relative paths are relative to the current
# directory; the shipped configs assume the repository root.
#
# The final model and tokenizer (with its chat template) land in output_dir as safetensors and
# <output_dir>/sft_complete.json marks the run finished: running again is then a no-op. An
# interrupted run resumes from its last checkpoint (auto_resume_from_checkpoints).
#
# Environment: SFT_PYTHON (default .venv-sft/bin/python), NPROC (processes; default: the visible
# GPUs, or 1 on CPU), TORCHRUN_ARGS (extra torchrun arguments, e.g. for several nodes).
set -euo pipefail
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
  exit $(( $# < 1 ? 2 : 0 ))
fi
source "$(dirname "$0")/../scripts/stage_env.sh" sft  # ROOT, PY, PYTHONPATH
CONFIG=$1; shift
OVERRIDES=() AXOLOTL_ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --*) AXOLOTL_ARGS=("$@"); break ;;
    *=*) OVERRIDES+=("$1"); shift ;;
    *) echo "train.sh: '$1' is neither key=value nor an --axolotl-arg" >&2; exit 2 ;;
  esac
done

export AXOLOTL_DO_NOT_TRACK=${AXOLOTL_DO_NOT_TRACK:-1}
NPROC=${NPROC:-$("$PY" -c 'import torch; print(torch.cuda.device_count())')}
[ "$NPROC" -ge 1 ] || NPROC=1

PLAN=$("$PY" -m SFT.prepare_run "$CONFIG" "${OVERRIDES[@]}" --gpus "$NPROC")
IFS=$'\t' read -r STATE RESOLVED OUT <<< "$PLAN"
if [ "$STATE" = "done" ]; then
  echo "train.sh: $RESOLVED already holds a finished model ($RESOLVED/sft_complete.json); nothing to do."
  exit 0
fi

echo "train.sh: training with $RESOLVED on $NPROC process(es)"
if [ "$NPROC" -gt 1 ] || [ -n "${TORCHRUN_ARGS:-}" ]; then  # several nodes: torchrun even with 1 GPU each
  # shellcheck disable=SC2206  # TORCHRUN_ARGS is a list of words on purpose
  LAUNCH=("$PY" -m torch.distributed.run --nproc_per_node "$NPROC" ${TORCHRUN_ARGS:-} -m axolotl.cli.train)
else
  LAUNCH=("$PY" -m axolotl.cli.train)
fi
# Training runs in the background so that a SIGTERM or SIGHUP to this script (the pipeline stopping,
# a scheduler's preemption, the pipeline's own death) reaches it too: bash would otherwise die alone
# and leave the trainer running on the GPUs, racing the re-run that resumes it.
stop_training() { kill -TERM "$TRAINER" 2>/dev/null || true; wait "$TRAINER" || true; exit 143; }
trap stop_training TERM HUP INT
START=$(date +%s)
"${LAUNCH[@]}" "$RESOLVED" "${AXOLOTL_ARGS[@]}" &
TRAINER=$!
wait "$TRAINER"
trap - TERM HUP INT
"$PY" -m SFT.finish_run "$OUT" --wall-seconds $(( $(date +%s) - START ))
