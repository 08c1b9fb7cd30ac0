#!/usr/bin/env bash
# The tiny world's evidence that the method works (issue 9): the README's tiny M-DPO run over three
# seeds, the paper's comparisons on seed 0 (single-turn DPO, M-KTO, single-turn KTO, RAFT, fixed
# reference, on-policy sampling, beta 0.01 and 0.5, an NLL term; they start from seed 0's SFT
# model), and one table with per-seed numbers. Each run takes about 11 minutes on 2 idle cores (a
# comparison 7-8: no SFT), 93 in all before RAFT was added (RAFT not yet timed); finished runs are
# skipped, so re-running resumes.
#
#   bash scripts/tiny_study.sh            # -> runs/tiny_study.md, assets/tiny_cpu_accuracy.png
set -euo pipefail
cd "$(dirname "$0")/.."
# Stopping the study stops the run in progress (bash alone would leave it running): each run is
# waited for in the background, and SIGTERM/SIGINT/SIGHUP are passed on to it.
child=
trap 'if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; wait "$child"; fi; exit 143' TERM INT HUP
run() { "$@" & child=$!; wait "$child"; child=; }
run bash scripts/run_iterative.sh configs/tiny_cpu.yaml
for seed in 1 2; do
  run bash scripts/run_iterative.sh configs/tiny_cpu.yaml name=tiny_cpu_seed$seed world.seed=$seed
done
comparisons=(single-turn-dpo mkto single-turn-kto raft fixed-ref on-policy beta0.01 beta0.5 nll)
for c in "${comparisons[@]}"; do
  run bash scripts/run_iterative.sh "configs/tiny_cpu_$c.yaml"
done
.venv-inference/bin/python scripts/make_tables.py runs/tiny_cpu "${comparisons[@]/#/runs/tiny_cpu_}" \
  --seeds runs/tiny_cpu_seed1 runs/tiny_cpu_seed2 --out runs/tiny_study.md --plot assets/tiny_cpu_accuracy.png
