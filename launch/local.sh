#!/usr/bin/env bash
# N processes of a job on this machine joined over loopback by jax.distributed (CPU devices,
# gloo collectives): the multi-host code paths of a TPU pod or a GPU cluster, on one machine.
#
#   launch/local.sh [--dry-run] [--job JOB] N JOB-ARGUMENTS
#   launch/local.sh 2 configs/mtc.py:smoke /tmp/two_hosts train.steps=20       (train: CONFIG WORKDIR)
#   launch/local.sh 2 --job tag configs/tag.py:smoke model.path=E input.files='C/*.tfrecord' output.dir=/tmp/tagged
#
# --job picks the strongaudio subcommand (default train; common.sh says how each takes its
# arguments). Every process runs the same command with JAX_PROCESS_ID 0..N-1 and DEVICES
# (default 2) virtual CPU devices, so the mesh spans N x DEVICES devices. Each output line is
# prefixed with its process ([p0], [p1], ...); process 0 writes the logs and metrics. The
# script waits for all of them; if one fails it kills the others and exits with its status.
# SIGTERM or Ctrl-C is passed on as SIGTERM to every process: training stops at the same step
# on all, saves it together and exits 0 (running the same command again resumes there); an
# inference job resumes its shards when run again.
# Environment: DEVICES (per process), PORT (coordinator port; default a free one), PYTHON.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

usage() { echo "usage: $0 [--dry-run] [--job JOB] N $(job_usage)"; }
n=""
while [[ $# -gt 0 ]]; do  # options before or after N
  case $1 in
    --dry-run) DRY_RUN=1; shift ;;
    --job) set_job "${2:-}"; shift 2 ;;
    --) shift; break ;;
    --*) die "unknown option '$1'; $(usage)" ;;
    *) [[ -z $n ]] || break; n=$1; shift ;;
  esac
done
[[ -n $n ]] || die "$(usage)"
is_count "$n" || die "N must be a positive number of processes, not '$n'; $(usage)"
check_processes "$n"
job_command "$@"
devices=${DEVICES:-2}
is_count "$devices" || die "DEVICES must be a positive number of CPU devices per process, not '$devices'"
port=${PORT:-$(free_port)}

export_env JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1 \
  "XLA_FLAGS=${XLA_FLAGS:+$XLA_FLAGS }--xla_force_host_platform_device_count=$devices" \
  "JAX_COORDINATOR_ADDRESS=127.0.0.1:$port" "JAX_NUM_PROCESSES=$n"

status=0
run_processes "$n" 0 "${job_cmd[@]}" || status=$?
exit "$status"
