#!/usr/bin/env bash
# A job on the GPUs of one machine. Install the CUDA build first: pip install -e '.[gpu]'
#
#   launch/gpu.sh [--dry-run] [--per-gpu] [--job JOB] JOB-ARGUMENTS
#   launch/gpu.sh configs/vit_b_mtc.py:gpu8 /data/runs/vit_b data.train_files=...   (train: CONFIG WORKDIR)
#   launch/gpu.sh --job caption configs/caption.py:gpu8 model.path=W input.files=... output.dir=...
#
# --job picks the strongaudio subcommand (default train; common.sh says how each takes its
# arguments).
# Default: one process drives all local GPUs (the mesh spans them). --per-gpu: one process
# per GPU joined by jax.distributed over loopback (JAX_LOCAL_DEVICE_IDS=i for process i),
# the layout of a multi-node SLURM job on one node; output lines are prefixed [pI]. GPUS
# (default: nvidia-smi's count) sets how many. The XLA / NCCL settings are in gpu_env.sh.
# SIGTERM or Ctrl-C: training saves a checkpoint and exits 0; an inference job resumes its
# shards when run again.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

usage() { echo "usage: $0 [--dry-run] [--per-gpu] [--job JOB] $(job_usage)"; }
per_gpu=0
while [[ ${1:-} == --* ]]; do
  case $1 in
    --dry-run) DRY_RUN=1; shift ;;
    --per-gpu) per_gpu=1; shift ;;
    --job) set_job "${2:-}"; shift 2 ;;
    --) shift; break ;;
    *) die "unknown option '$1'; $(usage)" ;;
  esac
done
job_command "$@"

# shellcheck source-path=SCRIPTDIR source=gpu_env.sh
source "$(dirname "$0")/gpu_env.sh"
if ((!per_gpu)); then
  # One process, several GPUs: NCCL's group launch mode avoids a known deadlock of
  # single-process multi-GPU collectives (JAX-Toolbox's GPU performance tips).
  export_env "NCCL_LAUNCH_MODE=${NCCL_LAUNCH_MODE:-GROUP}"
  if [[ $DRY_RUN == 1 ]]; then
    run "${job_cmd[@]}"
    exit 0
  fi
  exec "${job_cmd[@]}"
fi

if [[ -z ${GPUS:-} ]]; then
  if [[ $DRY_RUN == 1 ]] && ! command -v nvidia-smi >/dev/null; then
    GPUS=8
    echo "# dry run without nvidia-smi: assuming GPUS=8"
  else
    GPUS=$(nvidia-smi -L | grep -c '^GPU ') || die "nvidia-smi found no GPU; set GPUS"
  fi
fi
is_count "$GPUS" || die "GPUS must be a positive number, not '$GPUS'"
check_processes "$GPUS"
export_env PYTHONUNBUFFERED=1 "JAX_COORDINATOR_ADDRESS=127.0.0.1:${PORT:-$(free_port)}" \
  "JAX_NUM_PROCESSES=$GPUS"
status=0
run_processes "$GPUS" 1 "${job_cmd[@]}" || status=$?
exit "$status"
