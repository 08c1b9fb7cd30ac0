#!/usr/bin/env bash
# Rehearse every GPU config of configs/ on this CPU machine (scripts/rehearsal.py): each runs through
# every stage with stand-in models and data, each substitution printed in its log.
#
#   bash scripts/rehearse_all.sh [configs/X.yaml ...] [key=value ...]
#   e.g. bash scripts/rehearse_all.sh configs/mistral-7b-v0.3_mkto.yaml iterations=2
#
# GPU configs: scripts/rehearsal.py gpu_configs() (not tiny_cpu*, e2e_smoke, *_cpu*); naming some
# rehearses only those (and the runs they need). Configs whose SFT stage is the same (config, base
# model, data, overrides: e.g. Gemma-2's five methods) rehearse it once: the first (a config without
# `base:`, else the first by name) runs it and the others start from its SFT model; it runs first.
# Logs go to runs/rehearsal/<name>.log, each config's latest result to runs/rehearsal/<name>.result,
# and runs/rehearsal/SUMMARY.md lists them all; re-running resumes each run where it stopped (a
# passed run finishes in seconds, and keeps the row of the run that did the work).
set -uo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
OUT=runs/rehearsal
mkdir -p "$OUT"
configs=(); extra_args=()
for a in "$@"; do
  case "$a" in
    *=*) extra_args+=("$a") ;;
    *.yaml) configs+=("$a") ;;
    *) echo "rehearse_all: '$a' is neither a config (configs/X.yaml) nor key=value" >&2; exit 2 ;;
  esac
done
# name <TAB> config <TAB> the run whose SFT model it starts from (configs with the same SFT stage)
PLAN=$(.venv-inference/bin/python - "${configs[@]}" <<'PY'
import re
import sys
from pathlib import Path
sys.path.insert(0, ".")
import yaml
from scripts.rehearsal import gpu_configs
chosen = {Path(c).resolve() for c in sys.argv[1:]}
known = {p.resolve() for p, _ in gpu_configs()}
for c in sorted(chosen - known):
    sys.exit(f"rehearse_all: {c} is not one of the GPU configs of configs/")
configs = [(str(p.relative_to(p.parents[1])), cfg) for p, cfg in gpu_configs()]
def sft_stage(cfg):
    s = cfg.sft
    return None if s.model else (s.config, s.base_model, s.data, tuple(s.overrides))
def leader(path, cfg):  # the root config of a family first, then by name
    return ("base" in (yaml.safe_load(open(path)) or {}), cfg.name)
rows = []
for path, cfg in configs:
    same = [(p, c) for p, c in configs if sft_stage(cfg) is not None and sft_stage(c) == sft_stage(cfg)]
    first = min(same, key=lambda pc: leader(*pc))[1].name if same else cfg.name
    base = "" if first == cfg.name else first
    needs = ({base} | set(re.findall(r"\{runs\}/([^/]+)/", cfg.sft.model))) - {""}
    rows.append((1 if needs else 0, cfg.name, path, base, needs))
if chosen:
    picked = [r for r in rows if Path(r[2]).resolve() in chosen]
    wanted = {r[1] for r in picked}.union(*(r[4] for r in picked))
    rows = [r for r in rows if r[1] in wanted]
for _, name, path, base, _ in sorted(rows):
    print(f"{name}\t{path}\t{base}")
PY
) || exit 1
status=0
while IFS=$'\t' read -r name config base; do
  extra=()
  [ -n "$base" ] && extra=("sft.model={runs}/$base/sft/model")
  log="$OUT/$name.log"
  echo "== rehearsing $config ${extra[*]} (log: $log)"
  start=$(date +%s)
  began=$(date -u '+%Y-%m-%d %H:%M UTC')
  echo "== rehearse_all: $began" >> "$log"
  size=$(wc -c < "$log")
  if bash scripts/run_iterative.sh "$config" rehearse=true "${extra[@]}" "${extra_args[@]}" >> "$log" 2>&1; then
    result=pass
  else
    result=FAIL; status=1
  fi
  minutes=$(awk "BEGIN {printf \"%.1f\", ($(date +%s) - $start) / 60}")
  echo "   $result in $minutes min"
  # a passed run that had nothing left to run (a dependency of another) keeps the row of the run that did it
  if [ "$result" = FAIL ] || [ ! -f "$OUT/$name.result" ] || tail -c +$((size + 1)) "$log" | grep -q '^\[run '; then
    echo "| $config | $result | $minutes | $began | $(nproc) | ${extra_args[*]:-none} | $log |" > "$OUT/$name.result"
  fi
done <<< "$PLAN"
SUMMARY="$OUT/SUMMARY.md"
{ echo "# Rehearsals (each config's latest; minutes include only what that invocation had left to run)"; echo
  echo "| config | result | minutes | started | cores | extra arguments | log |"; echo "|---|---|---|---|---|---|---|"
  cat "$OUT"/*.result; } > "$SUMMARY"
cat "$SUMMARY"
exit $status
