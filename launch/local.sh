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
port=${PORT:-$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

export_env JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 \
  "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$devices" \
  "JAX_COORDINATOR_ADDRESS=127.0.0.1:$port" "JAX_NUM_PROCESSES=$n"

pids=()
for ((i = 0; i < n; i++)); do
  cmd=(env "JAX_PROCESS_ID=$i" "$PYTHON" -m strongaudio_jax.cli train --config "$config"
       --workdir "$workdir" "$@")
  if [[ $DRY_RUN == 1 ]]; then
    run "${cmd[@]}"
    continue
  fi
  "${cmd[@]}" > >(sed -u "s/^/[p$i] /") 2>&1 &
  pids+=("$!")
done
[[ $DRY_RUN == 1 ]] && exit 0

# Passed on, not acted on here: the processes save a checkpoint together and exit.
trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT

status=0
running=("${pids[@]}")
while ((${#running[@]} > 0)); do
  finished=""
  rc=0
  wait -n -p finished "${running[@]}" || rc=$?
  [[ -n $finished ]] || continue  # a signal interrupted the wait; it was passed on
  remaining=()
  for pid in "${running[@]}"; do
    [[ $pid == "$finished" ]] || remaining+=("$pid")
  done
  running=("${remaining[@]+"${remaining[@]}"}")
  if ((rc != 0 && status == 0)); then
    status=$rc
    echo "local.sh: process $finished exited with status $rc; killing the others" >&2
    # The others would wait on it forever in a collective: nothing they could save is
    # consistent now. The last committed checkpoint is what a rerun resumes from.
    ((${#running[@]} == 0)) || kill -KILL "${running[@]}" 2>/dev/null || true
  fi
done
exit "$status"
