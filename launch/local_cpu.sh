#!/usr/bin/env bash
# Train on this machine's CPU with N virtual devices, so the same sharded code paths run as
# on a GPU node or a TPU pod.
#   launch/local_cpu.sh configs/mtc.py:demo /tmp/strongaudio_demo [key=value ...]
#   DEVICES=4 launch/local_cpu.sh configs/mtc.py:smoke /tmp/smoke
set -euo pipefail
config=${1:?usage: $0 CONFIG WORKDIR [key=value ...]}
workdir=${2:?usage: $0 CONFIG WORKDIR [key=value ...]}
shift 2
export JAX_PLATFORMS=cpu
export XLA_FLAGS="${XLA_FLAGS:-} --xla_force_host_platform_device_count=${DEVICES:-8}"
exec strongaudio train --config "$config" --workdir "$workdir" "$@"
