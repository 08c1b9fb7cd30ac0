#!/usr/bin/env bash
# Generation across nodes: one `vllm serve` per node of the SLURM allocation (data parallel over its
# GPUs), then the generation command, pointed at all of them, then the servers are stopped.
#
#   bash scripts/slurm/with_vllm_servers.sh bash inference/generate.sh \
#       --config CFG model=M output=OUT [key=value ...] [--and ...]
#
# The model is the command's first `model=`; the servers' dtype its first `backend.dtype=` (else
# VLLM_DTYPE, default bfloat16): every run of the command is served by these servers in that dtype.
# Each run of the command gets `backend.kind=openai backend.base_urls=[...]`: the client sends each
# request to the server with the fewest in flight, and a request whose server dies to another one.
# The pipeline uses it as a prefix: generate.prefix=[bash,scripts/slurm/with_vllm_servers.sh].
#
# Environment: GPUS_PER_NODE (default SLURM_GPUS_ON_NODE, else 1), VLLM_PORT (8000),
# VLLM_SERVE_ARGS (more server flags, e.g. "--tensor-parallel-size 2"), VLLM_PYTHON (the inference
# environment's python), SERVER_START_S (seconds to wait for the servers, 1800).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${VLLM_PYTHON:-$ROOT/.venv-inference/bin/python}
[ -n "${SLURM_JOB_NODELIST:-}" ] || { echo "with_vllm_servers.sh: not inside a SLURM allocation" >&2; exit 2; }
model='' dtype=''
for arg in "$@"; do
  case $arg in
    model=*) [ -n "$model" ] || model=${arg#model=} ;;
    backend.dtype=*) [ -n "$dtype" ] || dtype=${arg#backend.dtype=} ;;
  esac
done
[ -n "$model" ] || { echo "with_vllm_servers.sh: the command names no model=..." >&2; exit 2; }
dtype=${dtype:-${VLLM_DTYPE:-bfloat16}}
PORT=${VLLM_PORT:-8000}
GPUS=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
mapfile -t NODES < <(scontrol show hostnames "$SLURM_JOB_NODELIST")
URLS=()
for node in "${NODES[@]}"; do URLS+=("http://$node:$PORT/v1"); done

# shellcheck disable=SC2086  # VLLM_SERVE_ARGS is a list of words on purpose
srun --overlap --nodes="${#NODES[@]}" --ntasks-per-node=1 --cpus-per-task="${SLURM_CPUS_PER_TASK:-1}" \
  --kill-on-bad-exit=1 \
  "$PY" -m vllm.entrypoints.openai.api_server --model "$model" --host 0.0.0.0 --port "$PORT" \
  --dtype "$dtype" --data-parallel-size "$GPUS" --seed 0 ${VLLM_SERVE_ARGS:-} &
SERVERS=$!
trap 'kill "$SERVERS" 2>/dev/null; wait "$SERVERS" 2>/dev/null || true' EXIT

deadline=$(( $(date +%s) + ${SERVER_START_S:-1800} ))
for url in "${URLS[@]}"; do
  until "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/models", timeout=5)' "$url" 2>/dev/null; do
    kill -0 "$SERVERS" 2>/dev/null || { echo "with_vllm_servers.sh: the servers exited before answering" >&2; exit 1; }
    [ "$(date +%s)" -lt "$deadline" ] || { echo "with_vllm_servers.sh: $url did not answer in time" >&2; exit 1; }
    sleep 5
  done
done
echo "with_vllm_servers.sh: ${#URLS[@]} server(s) up for $model ($dtype): ${URLS[*]}" >&2

list=$(IFS=,; echo "${URLS[*]}")
ADD=("backend.kind=openai" "backend.base_urls=[$list]")
CMD=()
for arg in "$@"; do
  [ "$arg" = --and ] && CMD+=("${ADD[@]}")
  CMD+=("$arg")
done
"${CMD[@]}" "${ADD[@]}"
