#!/usr/bin/env bash
# Preference data: graded trajectories -> M-DPO pairs and M-KTO rows (inference/pairs.py), the paper's
# filters and one seeded pair per prompt; writes OUT/dpo, OUT/kto (`datasets` on disk) and OUT/stats.json.
#
#   bash inference/pairs.sh --config inference/configs/pairs_tiny.yaml output=OUT tokenizer=MODEL \
#        'runs=[{path: CUR.jsonl, source: current}, {path: PREV.jsonl, source: previous}]' [key=value ...]
#
# key=value overrides: dotted keys, list indices, YAML values (formats/config.py); `--help` lists
# every field. Environment: INFERENCE_PYTHON (default .venv-inference/bin/python).
set -euo pipefail
source "$(dirname "$0")/../scripts/stage_env.sh" inference
exec "$PY" -m inference.pairs "$@"
