#!/usr/bin/env bash
# Grading: scores each trajectory of generation runs against the ground truth (inference/evaluate.py),
# `paper` and `strict` graders side by side; writes <run>.scores.jsonl and <run>.metrics.json beside each run.
#
#   bash inference/grade.sh --config inference/configs/evaluate.yaml RUN.jsonl [RUN2.jsonl ...] [key=value ...]
#
# key=value overrides: dotted keys, list indices, YAML values (formats/config.py); `--help` lists
# every field. Environment: INFERENCE_PYTHON (default .venv-inference/bin/python).
set -euo pipefail
source "$(dirname "$0")/../scripts/stage_env.sh" inference
exec "$PY" -m inference.evaluate "$@"
