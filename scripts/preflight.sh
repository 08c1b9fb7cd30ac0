#!/usr/bin/env bash
# Check everything a pipeline run needs before any long stage starts (about a minute):
#
#   bash scripts/preflight.sh CONFIG [key=value ...]
#
# GPUs against the config's parallel sizes, each stage environment, Hub access (token, gated models)
# and data set columns, free disk against an estimate of what the run writes, reporting that never
# prompts, free ports. Exit 1 with each failing item and its fix. Logic: scripts/preflight.py.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
  [ -x .venv-inference/bin/python ] && exec .venv-inference/bin/python scripts/preflight.py --help
  sed -n '2,8p' "$0"; exit 0
fi
[ -x .venv-inference/bin/python ] || { echo "preflight: .venv-inference is missing: bash scripts/setup_envs.sh" >&2; exit 1; }
exec .venv-inference/bin/python scripts/preflight.py "$@"
