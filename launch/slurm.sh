#!/usr/bin/env bash
# Submit a multi-node GPU job to SLURM (launch/slurm.sbatch runs it): training by default, or
# any job with --job (tag, caption, finetune, ...; common.sh says how each takes its arguments).
#
#   launch/slurm.sh [options] JOB-ARGUMENTS
#   launch/slurm.sh --nodes 2 --partition gpu configs/vit_b_mtc.py:gpu-2x8 /shared/runs/vit_b \
#     data.train_files='/shared/corpus/train-*.tfrecord'
#   launch/slurm.sh --nodes 2 --job tag configs/tag.py:gpu-2x8 model.path=/shared/runs/mtc \
#     input.files='/shared/corpus/*.tfrecord' output.dir=/shared/tagged
#
# options: --nodes N (default 2), --gpus-per-node G (default 8), --per-gpu (one process per
# GPU instead of one per node), --job JOB (default train), --partition P, --account A,
# --time HH:MM:SS, --job-name NAME (default strongaudio-JOB), --dry-run (or DRY_RUN=1: print the
# sbatch command). Output: slurm-NAME-JOBID.out here.
# Stop: scancel JOBID (SIGTERM: training saves a checkpoint and exits, an inference job stops;
# submit again to resume either).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

usage() { echo "usage: $0 [--nodes N] [--gpus-per-node G] [--per-gpu] [--job JOB] [--partition P] [--account A] [--time T] [--job-name NAME] [--dry-run] $(job_usage)"; }
nodes=2 gpus=8 per_gpu=0 extra=() job_name=""
while [[ ${1:-} == --* ]]; do
  case $1 in
    --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
    --gpus-per-node) gpus=${2:?--gpus-per-node needs a number}; shift 2 ;;
    --per-gpu) per_gpu=1; shift ;;
    --partition | --account | --time) extra+=("$1=${2:?$1 needs a value}"); shift 2 ;;
    --job-name) job_name=${2:?--job-name needs a value}; shift 2 ;;
    --job) set_job "${2:-}"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --) shift; break ;;
    *) die "unknown option '$1'; $(usage)" ;;
  esac
done
job_command "$@"  # (checks the arguments; slurm.sbatch builds the command on the nodes)
job_forward "$@"
is_count "$nodes" || die "--nodes must be a positive number, not '$nodes'"
is_count "$gpus" || die "--gpus-per-node must be a positive number, not '$gpus'"
tasks_per_node=1
((per_gpu)) && tasks_per_node=$gpus
check_processes $((nodes * tasks_per_node))
if [[ -z $job_name ]]; then
  job_name=strongaudio
  [[ $JOB == train ]] || job_name+=-$JOB
fi
echo "$job_name: $nodes node(s) x $gpus GPU(s), $((nodes * tasks_per_node)) process(es)"

cd "$(dirname "$0")/.."  # the job starts here (SLURM_SUBMIT_DIR): the checkout
run sbatch --job-name="$job_name" --nodes="$nodes" --ntasks-per-node="$tasks_per_node" \
  --gpus-per-node="$gpus" "${extra[@]+"${extra[@]}"}" launch/slurm.sbatch "${job_args[@]}"
