#!/usr/bin/env bash
# Train on the GPUs of one machine (one process sees all local GPUs; the mesh spans them).
# Install the CUDA build first: pip install -e '.[gpu]'
#   launch/gpu.sh configs/mtc.py:demo /tmp/strongaudio_gpu [key=value ...]
set -euo pipefail
config=${1:?usage: $0 CONFIG WORKDIR [key=value ...]}
workdir=${2:?usage: $0 CONFIG WORKDIR [key=value ...]}
shift 2
# Let XLA overlap collectives with compute and pick faster GEMM fusions; keep 90% of memory.
export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_enable_latency_hiding_scheduler=true"
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.9}
exec strongaudio train --config "$config" --workdir "$workdir" "$@"
