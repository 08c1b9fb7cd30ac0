#!/usr/bin/env bash
# Run every test, each stage in its own environment (set up first if needed).
#
#   bash scripts/test.sh                 # everything: lint, then formats+inference, alignment, SFT, pipeline,
#                                        # and the main GPU config rehearsed on CPU (tests/rehearsal_run)
#   bash scripts/test.sh inference -k grade   # one stage; arguments after the stage go to pytest
#
# The tests share one tiny world (built here once, under runs/test_world) through $TINY_WORLD.
# Everything: the pipeline tests (printed as they run) run beside the three stages' and the rehearsal (one after
# another, each printed when it ends and kept in runs/test-reports/<suite>.log): most of the time
# goes to process start-up and one-core vLLM engines, so two lanes keep two cores busy.
# TEST_LANES=1: one suite at a time, each printed as it runs.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
ONLY=${1:-all}
[ $# -gt 0 ] && shift
bash scripts/setup_envs.sh || exit 1

export TINY_WORLD=${TINY_WORLD:-$ROOT/runs/test_world}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
export TOKENIZERS_PARALLELISM=false
world_stamp=$(sha256sum scripts/make_tiny_world.py | cut -c1-16)  # a changed script: a new world
if [ ! -f "$TINY_WORLD/WORLD.json" ] || [ "$(cat "$TINY_WORLD/.script-stamp" 2>/dev/null)" != "$world_stamp" ]; then
  echo "== building the tiny world for tests in $TINY_WORLD"
  .venv-alignment/bin/python scripts/make_tiny_world.py --seed 0 --out "$TINY_WORLD" || exit 1
  echo "$world_stamp" > "$TINY_WORLD/.script-stamp"
fi

REPORTS="$ROOT/runs/test-reports"
rm -rf "$REPORTS"; mkdir -p "$REPORTS"
status=0
suite() {  # name venv paths...: pytest on the paths that exist; fails unless all passed (or none ran)
  local name=$1 venv=$2; shift 2
  local paths=()
  for p in "$@"; do [[ -d $p || $p == --* ]] && paths+=("$p"); done
  [ ${#paths[@]} -eq 0 ] && return 0
  echo "== $name tests (${paths[*]}) in $venv"
  "$venv/bin/python" -m pytest "${paths[@]}" -q --junitxml="$REPORTS/$name.xml" "${PYTEST_ARGS[@]}"
  local rc=$?
  # 5 = no test collected (e.g. a -k filter that matches nothing in this stage): not a failure.
  [ $rc -eq 0 ] || [ $rc -eq 5 ]
}
run() {  # name: the suite of that name
  case $1 in
    inference) suite inference .venv-inference formats/tests inference/tests ;;
    alignment) suite alignment .venv-alignment alignment_algorithms/tests ;;
    sft) suite sft .venv-sft SFT/tests ;;
    pipeline) suite pipeline .venv-inference tests --ignore=tests/rehearsal_run ;;
    rehearsal) suite rehearsal .venv-inference tests/rehearsal_run ;;  # the main GPU config, rehearsed on CPU
    *) echo "test.sh: no stage '$1' (all, lint, inference, alignment, sft, pipeline, rehearsal)" >&2; return 2 ;;
  esac
}
logged() {  # name: the suite, its output to runs/test-reports/<name>.log, printed when it ends
  local rc=0
  echo "== $1 tests started beside the others; output when they end (meanwhile: tail -f runs/test-reports/$1.log)"
  run "$1" > "$REPORTS/$1.log" 2>&1 || rc=1
  cat "$REPORTS/$1.log"
  return $rc
}
PYTEST_ARGS=("$@")

if [ "$ONLY" = all ] || [ "$ONLY" = lint ]; then
  echo "== ruff"
  .venv-inference/bin/ruff check . || status=1
fi
if [ "$ONLY" = all ] && [ "${TEST_LANES:-2}" -ge 2 ]; then
  ( rc=0; for s in inference alignment sft rehearsal; do logged "$s" || rc=1; done; exit $rc ) &
  stages=$!
  run pipeline || status=1
  wait "$stages" || status=1
elif [ "$ONLY" = all ]; then
  for s in inference alignment sft pipeline rehearsal; do run "$s" || status=1; done
elif [ "$ONLY" != lint ]; then
  run "$ONLY" || status=1
fi

# One closing line over all stages.
.venv-inference/bin/python - "$REPORTS" <<'PY'
import pathlib, sys, xml.etree.ElementTree as ET
t = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
for f in pathlib.Path(sys.argv[1]).glob("*.xml"):
    for s in ET.parse(f).getroot().iter("testsuite"):
        for k in t:
            t[k] += int(s.get(k, 0))
failed = t["failures"] + t["errors"]
print(f"{t['tests'] - failed - t['skipped']} passed, {failed} failed, {t['skipped']} skipped")
PY
exit $status
