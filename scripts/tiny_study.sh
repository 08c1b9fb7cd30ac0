#!/usr/bin/env bash
# The tiny world's evidence that the method works (issues 9 and 17): the README's tiny M-DPO run over
# three seeds; the paper's Table 1 methods (M-DPO with checkpoint selection, single-turn DPO, M-KTO,
# single-turn KTO, RAFT) on the same three seeds, each from its seed's SFT model; the paper's
# ablations (fixed reference, on-policy sampling, beta 0.01 and 0.5, an NLL term) on seed 0; and one
# table with per-seed numbers and each method's difference from M-DPO on the same seed. A run takes
# about 11 minutes on 2 idle cores (SFT and three iterations), a comparison 7-8 (no SFT), one with
# selection ~10: about 3 h 20 min in all. Finished runs are skipped, so re-running resumes.
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
methods=(select single-turn-dpo mkto single-turn-kto raft)
ablations=(fixed-ref on-policy beta0.01 beta0.5 nll)
for c in "${methods[@]}" "${ablations[@]}"; do
  run bash scripts/run_iterative.sh "configs/tiny_cpu_$c.yaml"
done
for c in "${methods[@]}"; do
  for seed in 1 2; do
    run bash scripts/run_iterative.sh "configs/tiny_cpu_$c.yaml" name=tiny_cpu_${c}_seed$seed world.seed=$seed \
      "sft.model={runs}/tiny_cpu_seed$seed/sft/model"
  done
done
comparisons=("${methods[@]}" "${ablations[@]}")
.venv-inference/bin/python scripts/make_tables.py runs/tiny_cpu "${comparisons[@]/#/runs/tiny_cpu_}" \
  --seeds runs/tiny_cpu_seed1 runs/tiny_cpu_seed2 --method-seeds _seed1 _seed2 \
  --out runs/tiny_study.md --plot assets/tiny_cpu_accuracy.png
