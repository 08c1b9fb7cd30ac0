#!/usr/bin/env bash
# One iteration of preference training: M-DPO, M-KTO or RAFT (alignment_algorithms/run_<algorithm>.py).
#
#   bash alignment_algorithms/train.sh mdpo --config alignment_algorithms/configs/mdpo_tiny_cpu.yaml \
#        model_name_or_path=M ref_model_name_or_path=R dataset_path=PAIRS/dpo output_dir=OUT [key=value ...]
#   LAUNCHER="accelerate launch --config_file alignment_algorithms/accelerate/zero2.yaml" \
#        bash alignment_algorithms/train.sh mdpo --config alignment_algorithms/configs/mdpo_gemma-1.1-7b-it.yaml ...
#
# M-KTO takes PAIRS/kto. key=value overrides: dotted keys, YAML values, TRL's config fields among
# them (formats/config.py); `--help` lists every field. Re-running resumes from the last checkpoint
# in OUT; a finished OUT is left as it is.
# Environment: LAUNCHER (the words before the script, looked up in the alignment environment first;
# default: its python), ALIGNMENT_PYTHON (default .venv-alignment/bin/python).
set -euo pipefail
source "$(dirname "$0")/../scripts/stage_env.sh" alignment
ALGORITHM=${1:-}
SCRIPT=$ROOT/alignment_algorithms/run_$ALGORITHM.py
if [ -z "$ALGORITHM" ] || [ ! -f "$SCRIPT" ]; then
  [ "$ALGORITHM" = -h ] || [ "$ALGORITHM" = --help ] && { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
  echo "train.sh: first argument: the algorithm, one of: $(cd "$ROOT/alignment_algorithms" && ls run_*.py | sed 's/run_//; s/\.py//' | tr '\n' ' ')" >&2
  exit 2
fi
shift
read -r -a LAUNCH <<< "${LAUNCHER:-$PY}"
[ -x "$(dirname "$PY")/${LAUNCH[0]}" ] && LAUNCH[0]="$(dirname "$PY")/${LAUNCH[0]}"
exec "${LAUNCH[@]}" "$SCRIPT" "$@"
