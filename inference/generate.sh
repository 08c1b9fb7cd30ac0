#!/usr/bin/env bash
# Generation: multi-turn trajectories with the Python tool, on vLLM (inference/generate.py).
#
#   bash inference/generate.sh --config inference/configs/generate_tiny.yaml model=M \
#        data.path=PROMPTS.jsonl output=OUT/trajectories.jsonl [key=value ...]
#   bash inference/generate.sh --config EVAL.yaml ... --and --config COLLECT.yaml ...   # one engine start
#
# key=value overrides: dotted keys, list indices, YAML values (formats/config.py); `--help` lists
# every field. Evaluation is this script with a greedy config (inference/configs/*_eval.yaml), then
# inference/grade.sh. Re-running the same command resumes an interrupted output file.
# Environment: INFERENCE_PYTHON (default .venv-inference/bin/python).
set -euo pipefail
source "$(dirname "$0")/../scripts/stage_env.sh" inference
exec "$PY" -m inference.generate "$@"
