# Sourced by each stage's script (inference/*.sh, alignment_algorithms/train.sh): sets ROOT and PY,
# the python of the stage's own environment (.venv-<stage>, or $<STAGE>_PYTHON), and puts the
# repository on PYTHONPATH so `python -m <stage>.<module>` works from any directory.
#   source scripts/stage_env.sh inference|alignment|sft
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
_stage_var="$(echo "$1" | tr '[:lower:]' '[:upper:]')_PYTHON"
PY=${!_stage_var:-$ROOT/.venv-$1/bin/python}
if [ ! -x "$PY" ]; then
  echo "$(basename "$0"): no $1 environment at $PY: run 'bash scripts/setup_envs.sh $1' (or set $_stage_var)" >&2
  exit 2
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}
unset _stage_var
