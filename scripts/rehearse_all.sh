#!/usr/bin/env bash
# Rehearse every GPU config of configs/ on this CPU machine (scripts/rehearsal.py): each runs through
# every stage with stand-in models and data, each substitution printed in its log.
#
#   bash scripts/rehearse_all.sh [key=value ...]        # e.g. iterations=2 prompts_per_iteration=8
#
# GPU configs: scripts/rehearsal.py gpu_configs() (not tiny_cpu*, e2e_smoke, *_cpu*). A variant
# (`base: configs/X.yaml`) that trains with its base's SFT config starts from the base's rehearsed SFT
# model (the same stage with the same inputs: rehearsed once); bases run first. Logs and a summary
# (pass/fail, minutes) go to runs/rehearsal/; re-running resumes each run where it stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
OUT=runs/rehearsal
mkdir -p "$OUT"
# name <TAB> config <TAB> base name (if the variant shares its base's SFT config)
PLAN=$(.venv-inference/bin/python - <<'PY'
import sys
sys.path.insert(0, ".")
import yaml
from scripts.pipeline import load
from scripts.rehearsal import gpu_configs
rows = []
for path, cfg in gpu_configs():
    path = str(path.relative_to(path.parents[1]))
    raw = yaml.safe_load(open(path)) or {}
    base = ""
    if "base" in raw and "config" not in (raw.get("sft") or {}) and not cfg.sft.model:
        base = load(raw["base"], []).name
    rows.append((1 if base else 0, cfg.name, path, base))
for _, name, path, base in sorted(rows):
    print(f"{name}\t{path}\t{base}")
PY
) || exit 1
SUMMARY="$OUT/SUMMARY.md"
{ echo "# Rehearsals ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; extra arguments: ${*:-none})"; echo
  echo "| config | result | minutes | log |"; echo "|---|---|---|---|"; } > "$SUMMARY"
status=0
while IFS=$'\t' read -r name config base; do
  extra=()
  [ -n "$base" ] && extra=("sft.model={runs}/$base/sft/model")
  log="$OUT/$name.log"
  echo "== rehearsing $config ${extra[*]} (log: $log)"
  start=$(date +%s)
  if bash scripts/run_iterative.sh "$config" rehearse=true "${extra[@]}" "$@" > "$log" 2>&1; then
    result=pass
  else
    result=FAIL; status=1
  fi
  minutes=$(awk "BEGIN {printf \"%.1f\", ($(date +%s) - $start) / 60}")
  echo "   $result in $minutes min"
  echo "| $config | $result | $minutes | $log |" >> "$SUMMARY"
done <<< "$PLAN"
cat "$SUMMARY"
exit $status
