#!/bin/sh
# One rank of a distributed saelab run under SLURM, started by srun with one task per rank:
#   srun --ntasks-per-node 8 scripts/slurm-rank.sh train my_run.toml
# It sets the variables saelab reads (torchrun's: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
# MASTER_ADDR, MASTER_PORT) from SLURM's, then runs saelab with the arguments given. MASTER_ADDR
# defaults to the allocation's first node (where task 0, which serves the rendezvous, runs),
# MASTER_PORT to 29500; set either to override. SAELAB picks the binary (default: saelab on PATH).
set -eu
for v in SLURM_PROCID SLURM_NTASKS SLURM_LOCALID; do
  eval "set_=\${$v:-}"
  if [ -z "$set_" ]; then
    echo "slurm-rank.sh: $v is not set: run this under srun, one task per rank" >&2
    exit 2
  fi
done
# SLURM_NTASKS_PER_NODE reads like "8" or "8(x2)"; without it, the tasks spread evenly.
per_node=${SLURM_NTASKS_PER_NODE:-}
per_node=${per_node%%(*}
if [ -z "$per_node" ]; then per_node=$((SLURM_NTASKS / ${SLURM_NNODES:-1})); fi
if [ -z "${MASTER_ADDR:-}" ]; then
  MASTER_ADDR=$(scontrol show hostnames "${SLURM_JOB_NODELIST:?}" | head -n 1)
fi
export RANK="$SLURM_PROCID" WORLD_SIZE="$SLURM_NTASKS" LOCAL_RANK="$SLURM_LOCALID"
export LOCAL_WORLD_SIZE="$per_node" MASTER_ADDR MASTER_PORT="${MASTER_PORT:-29500}"
exec "${SAELAB:-saelab}" "$@"
