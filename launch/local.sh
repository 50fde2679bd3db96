#!/usr/bin/env bash
# N training processes on this machine joined over loopback by jax.distributed (CPU devices,
# gloo collectives): the multi-host code paths of a TPU pod or a GPU cluster, on one machine.
#
#   launch/local.sh [--dry-run] N CONFIG WORKDIR [key=value ...]
#   launch/local.sh 2 configs/mtc.py:smoke /tmp/two_hosts train.steps=20
#
# Every process runs the same command with JAX_PROCESS_ID 0..N-1 and DEVICES (default 2)
# virtual CPU devices, so the mesh spans N x DEVICES devices. Each output line is prefixed with
# its process ([p0], [p1], ...); process 0 writes the logs and metrics. The script waits for
# all of them; if one fails it kills the others and exits with the failed one's status.
# SIGTERM or Ctrl-C is passed on as SIGTERM to every process: they stop at the same step, save
# it together and exit 0 (running the same command again resumes there).
# Environment: DEVICES (per process), PORT (coordinator port; default a free one), PYTHON.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

usage="usage: $0 [--dry-run] N CONFIG WORKDIR [key=value ...]"
if [[ ${1:-} == --dry-run ]]; then
  DRY_RUN=1
  shift
fi
[[ $# -ge 3 ]] || die "$usage"
n=$1 config=$2 workdir=$3
shift 3
is_count "$n" || die "N must be a positive number of processes, not '$n'; $usage"
devices=${DEVICES:-2}
is_count "$devices" || die "DEVICES must be a positive number of CPU devices per process, not '$devices'"
port=${PORT:-$(free_port)}

export_env JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 \
  "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$devices" \
  "JAX_COORDINATOR_ADDRESS=127.0.0.1:$port" "JAX_NUM_PROCESSES=$n"

status=0
run_processes "$n" 0 "$PYTHON" -m strongaudio_jax.cli train --config "$config" --workdir "$workdir" \
  "$@" || status=$?
exit "$status"
