#!/usr/bin/env bash
# Runs a distributed launcher on one node of a SLURM allocation, with its rank and rendezvous taken
# from SLURM. Start it once per node:
#
#   srun --ntasks-per-node=1 bash scripts/slurm/on_each_node.sh CMD [ARG ...]
#
# - M-DPO / M-KTO (CMD = alignment_algorithms/train.sh, LAUNCHER="accelerate launch ..."):
#   --num_machines, --machine_rank, --num_processes and the main node's address and port are added
#   to LAUNCHER (they override the accelerate config's);
# - SFT (CMD = SFT/train.sh): NPROC and TORCHRUN_ARGS are set, which train.sh passes to torchrun.
#
# Environment: GPUS_PER_NODE (default: SLURM_GPUS_ON_NODE, else the GPUs nvidia-smi lists),
# MASTER_ADDR (default: the allocation's first node), MASTER_PORT (default 29500).
set -euo pipefail
if [ -z "${SLURM_NNODES:-}" ] || [ -z "${SLURM_NODEID:-}" ]; then
  echo "on_each_node.sh: SLURM_NNODES / SLURM_NODEID unset: start it with srun inside an allocation" >&2
  exit 2
fi
[ $# -ge 1 ] || { echo "usage: on_each_node.sh CMD [ARG ...]" >&2; exit 2; }
MASTER_ADDR=${MASTER_ADDR:-$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)}
MASTER_PORT=${MASTER_PORT:-29500}
GPUS_PER_NODE=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}}
export MASTER_ADDR MASTER_PORT NPROC=$GPUS_PER_NODE
export TORCHRUN_ARGS="--nnodes $SLURM_NNODES --node_rank $SLURM_NODEID --master_addr $MASTER_ADDR --master_port $MASTER_PORT"

if [[ ${LAUNCHER:-} =~ ^([^ ]*accelerate\ launch)(.*)$ ]]; then
  export LAUNCHER="${BASH_REMATCH[1]} --num_machines $SLURM_NNODES --machine_rank $SLURM_NODEID \
--num_processes $((SLURM_NNODES * GPUS_PER_NODE)) --main_process_ip $MASTER_ADDR --main_process_port $MASTER_PORT${BASH_REMATCH[2]}"
fi
echo "on_each_node.sh: node $SLURM_NODEID of $SLURM_NNODES, $GPUS_PER_NODE process(es) here, main $MASTER_ADDR:$MASTER_PORT" >&2
exec "$@"
