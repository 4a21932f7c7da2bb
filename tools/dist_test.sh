#!/usr/bin/env bash
# Test on one or several nodes with torchrun (gloo on CPU, nccl on GPU).
# usage: bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py options]
# Several nodes: set NNODES, NODE_RANK, MASTER_ADDR and PORT on each node.
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
EXTRA=("${@:4}")
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
python -m torch.distributed.run --nnodes="$NNODES" --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" --master_port="$PORT" --nproc_per_node="$NPROC" \
    "$(dirname "$0")/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "${EXTRA[@]}"
