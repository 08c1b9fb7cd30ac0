#!/usr/bin/env bash
# A real pretrained model through one iteration of the loop on CPU (issue 20, part 2):
# SmolLM2-135M-Instruct from PyPI -> short SFT on GSM8K tool trajectories -> sampling with the
# sandbox -> grading -> pairs -> M-DPO -> greedy evaluation. Every step resumes when re-run.
#
#   bash scripts/run_smollm2.sh [key=value ...]     (overrides go to configs/smollm2_cpu.yaml)
#
# Figures of the 2026-12-05 run: benchmarks/RESULTS.md, "A real pretrained model".
set -euo pipefail
cd "$(dirname "$0")/.."
.venv-alignment/bin/python scripts/make_smollm2.py --out runs/models/SmolLM2-135M-Instruct
# SFT rows from 1000 on: the iteration's prompts are the first 64 training rows
[ -f runs/smollm2_data/sft.jsonl ] || .venv-inference/bin/python scripts/gsm8k_to_tool_sft.py \
  --data inference/data/gsm8k/train.jsonl --start 1000 --limit 256 --out runs/smollm2_data/sft.jsonl
bash scripts/run_iterative.sh configs/smollm2_cpu.yaml "$@"
