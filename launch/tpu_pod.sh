#!/usr/bin/env bash
# Train (or run any job) on a Cloud TPU slice: create it, install this checkout on every
# worker, start the same command on all of them (one process per host, detached from SSH),
# follow process 0's log, stop (training saves a checkpoint) and delete. Run it from your own
# machine with gcloud set up.
#
#   launch/tpu_pod.sh create NAME --zone Z --accelerator-type v5p-64 [--spot] [--queued]
#   launch/tpu_pod.sh run    NAME --zone Z CONFIG WORKDIR [key=value ...]
#   launch/tpu_pod.sh run    NAME --zone Z --job tag CONFIG [key=value ...]   # an inference job
#   launch/tpu_pod.sh attach NAME --zone Z     # follow worker 0's log again (Ctrl-C detaches)
#   launch/tpu_pod.sh stop   NAME --zone Z     # SIGTERM: all hosts save the same step, exit 0
#   launch/tpu_pod.sh delete NAME --zone Z     # the slice bills until it is deleted
#
# `launch/tpu_pod.sh help` prints every command and option. --dry-run (or DRY_RUN=1) prints
# the gcloud / ssh commands instead of running them. See docs/launching.md.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"

usage() {
  cat <<'USAGE'
usage: launch/tpu_pod.sh COMMAND NAME [options] [arguments]

commands:
  create NAME --accelerator-type TYPE [--runtime-version V] [--spot | --preemptible] [--queued]
         create the TPU VM slice NAME (reused when it exists), or with --queued a queued
         resource NAME (waits until it is ACTIVE). TYPE e.g. v5p-64, v5e-256, v6e-64.
  run NAME CONFIG WORKDIR [key=value ...] [--no-install] [--detach] [--env K=V ...]
      [--accelerator-type TYPE] [--job JOB]
         copy this checkout (git ls-files) to every worker and pip install it with [tpu]
         (skip with --no-install), start `strongaudio train` on all workers under setsid/nohup
         (it survives a lost SSH session), then follow worker 0's log (not with --detach).
         WORKDIR must be storage every worker sees: gs://BUCKET/... (docs/buckets.md).
         --env sets a variable for the job on every worker (e.g. LIBTPU_INIT_ARGS=...).
         --job JOB starts `strongaudio JOB` instead: tag and caption take CONFIG [key=value ...]
         (output.dir in the config or an override, e.g. gs://BUCKET/tagged), any other job
         its own arguments after -- (e.g. --job finetune -- --from E --task T --out O).
  attach NAME        follow worker 0's log until the run ends; Ctrl-C detaches, the run goes on
  logs NAME [--worker N | --worker all] [--lines N]
                     the last N (default 100) lines of a worker's log
  status NAME        the slice's state, and whether each worker's process is running
  stop NAME          SIGTERM to the job's process on every worker: training stops at the same
                     step on all hosts, saves it and exits 0; an inference job stops; `run`
                     again resumes either
  delete NAME [--queued]
                     delete the slice (with --queued: the queued resource and its slice)
  help               this text

options (every command):
  --zone ZONE        (or $ZONE) e.g. us-east5-a
  --project PROJECT  (or $PROJECT; default: gcloud's configured project)
  --dry-run          (or DRY_RUN=1) print the commands instead of running them
environment: REMOTE_DIR (the checkout's folder on the workers, default strongaudio_jax)
USAGE
}

[[ $# -ge 1 ]] || { usage >&2; exit 2; }
command=$1
shift
case $command in
  help | -h | --help) usage; exit 0 ;;
  create | run | attach | logs | status | stop | delete) ;;
  *) die "unknown command '$command'; use create, run, attach, logs, status, stop, delete or help" ;;
esac

zone=${ZONE:-} project=${PROJECT:-} accelerator="" runtime="" spot="" queued=0
install=1 detach=0 worker=0 lines=100 remote_env=()
positional=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --) shift; positional+=("$@"); break ;;  # the rest: the job's own arguments
    --job) set_job "${2:-}"; shift 2 ;;
    --zone) zone=${2:?--zone needs a value}; shift 2 ;;
    --project) project=${2:?--project needs a value}; shift 2 ;;
    --accelerator-type) accelerator=${2:?--accelerator-type needs a value}; shift 2 ;;
    --runtime-version) runtime=${2:?--runtime-version needs a value}; shift 2 ;;
    --spot) spot=--spot; shift ;;
    --preemptible) spot=--preemptible; shift ;;
    --queued) queued=1; shift ;;
    --no-install) install=0; shift ;;
    --detach) detach=1; shift ;;
    --env) [[ ${2:-} == *=* ]] || die "--env takes NAME=VALUE"; remote_env+=("$2"); shift 2 ;;
    --worker) worker=${2:?--worker needs a number or all}; shift 2 ;;
    --lines) lines=${2:?--lines needs a number}; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --*) die "unknown option '$1' for $command; see launch/tpu_pod.sh help" ;;
    *) positional+=("$1"); shift ;;
  esac
done
[[ ${#positional[@]} -ge 1 ]] || die "$command needs the slice's NAME; see launch/tpu_pod.sh help"
name=${positional[0]}
[[ -n $zone ]] || die "no zone: pass --zone ZONE or set ZONE (e.g. us-east5-a)"
remote_dir=${REMOTE_DIR:-strongaudio_jax}

gcloud_tpu=(gcloud compute tpus tpu-vm)
gcloud_qr=(gcloud compute tpus queued-resources)
where=(--zone "$zone")
[[ -z $project ]] || where+=(--project "$project")

# on_workers WORKER COMMAND: runs a shell command on one worker (0, 1, ...) or on all.
on_workers() {
  run "${gcloud_tpu[@]}" ssh "$name" "${where[@]}" --worker="$1" --command "$2"
}

# The runtime image that matches an accelerator type (override with --runtime-version).
default_runtime() {
  case $1 in
    v4-*) echo tpu-ubuntu2204-base ;;
    v5p-*) echo v2-alpha-tpuv5 ;;
    v5litepod-* | v5e-*) echo v2-alpha-tpuv5-lite ;;
    v6e-*) echo v2-alpha-tpuv6e ;;
    *) die "no default runtime for accelerator type '$1'; pass --runtime-version" ;;
  esac
}

# slice_info TYPE: "TYPE: C chips on H workers", and sets hosts=H. v4 / v5p names count
# TensorCores (2 per chip, 4 chips per host); v5e / v6e names count chips (up to 8 on one host,
# else 4 per host).
slice_info() {
  local n=${1##*-} chips
  [[ $n =~ ^[0-9]+$ ]] || die "cannot read the size of accelerator type '$1' (e.g. v5p-64)"
  case $1 in
    v4-* | v5p-*) chips=$((n / 2)); hosts=$(((chips + 3) / 4)) ;;
    *) chips=$n; if ((n <= 8)); then hosts=1; else hosts=$((n / 4)); fi ;;
  esac
  echo "$1: $chips chips on $hosts worker(s), one process each"
}

cmd_create() {
  [[ -n $accelerator ]] || die "create needs --accelerator-type (e.g. v5p-64, v5e-256)"
  runtime=${runtime:-$(default_runtime "$accelerator")}
  slice_info "$accelerator"
  if ((queued)); then
    [[ $spot != --preemptible ]] || die "queued resources take --spot, not --preemptible"
    run "${gcloud_qr[@]}" create "$name" "${where[@]}" --node-id "$name" \
      --accelerator-type "$accelerator" --runtime-version "$runtime" ${spot:+"$spot"}
    echo "waiting for queued resource $name to become ACTIVE (it bills from then on;" \
      "delete with: launch/tpu_pod.sh delete $name --zone $zone --queued)"
    [[ $DRY_RUN == 1 ]] && { run "${gcloud_qr[@]}" describe "$name" "${where[@]}" --format 'value(state.state)'; return; }
    local state=""
    while [[ $state != ACTIVE ]]; do
      state=$("${gcloud_qr[@]}" describe "$name" "${where[@]}" --format 'value(state.state)')
      echo "  $(date -u +%H:%M:%S) $state"
      case $state in
        FAILED | SUSPENDED) die "queued resource $name is $state: see gcloud compute tpus queued-resources describe $name --zone $zone" ;;
        ACTIVE) ;;
        *) sleep 30 ;;
      esac
    done
  else
    if [[ $DRY_RUN != 1 ]] && "${gcloud_tpu[@]}" describe "$name" "${where[@]}" >/dev/null 2>&1; then
      echo "TPU VM $name exists in $zone: reusing it"
      return
    fi
    [[ $DRY_RUN != 1 ]] || run "${gcloud_tpu[@]}" describe "$name" "${where[@]}"
    run "${gcloud_tpu[@]}" create "$name" "${where[@]}" --accelerator-type "$accelerator" \
      --version "$runtime" ${spot:+"$spot"}
    echo "TPU VM $name bills until deleted: launch/tpu_pod.sh delete $name --zone $zone"
  fi
}

cmd_install() {
  local tarball=${TMPDIR:-/tmp}/strongaudio_src.tgz
  if [[ $DRY_RUN == 1 ]]; then
    echo "+ git ls-files -z | tar --null -T - -czf $tarball"
  else
    tarball=$(mktemp "${TMPDIR:-/tmp}/strongaudio_src.XXXXXX")
    (cd "$(dirname "$0")/.." && git ls-files -z | tar --null -T - -czf "$tarball")
  fi
  on_workers all "mkdir -p $(quote "$remote_dir")"
  run "${gcloud_tpu[@]}" scp "$tarball" "$name:$remote_dir/src.tgz" "${where[@]}" --worker=all
  on_workers all "cd $(quote "$remote_dir") && tar -xzf src.tgz && python3 -m pip install -q -e \".[tpu]\""
  [[ $DRY_RUN == 1 ]] || rm -f "$tarball"
}

worker_cmd() {
  printf 'cd %s && launch/tpu_worker.sh %s' "$(quote "$remote_dir")" "$(quote_all "$@")"
}

# Follows worker 0's log until the run ends (Ctrl-C stops following only).
cmd_attach() {
  on_workers 0 "$(worker_cmd follow)"
}

cmd_run() {
  local need=0
  case $(job_kind) in
    config+workdir) need=2 ;;
    config) need=1 ;;
  esac
  ((${#positional[@]} > need)) || die "run needs NAME $(job_usage); see launch/tpu_pod.sh help"
  job_forward "${positional[@]:1}"
  if [[ -z $accelerator && $DRY_RUN != 1 ]]; then
    accelerator=$("${gcloud_tpu[@]}" describe "$name" "${where[@]}" --format 'value(acceleratorType)')
  fi
  if [[ -n $accelerator ]]; then
    slice_info "$accelerator"
    check_processes "$hosts"
  fi
  ((install)) && cmd_install
  # STRONGAUDIO_DISTRIBUTED=1: jax.distributed.initialize() finds the other workers from the
  # TPU metadata (strongaudio_jax/parallel/distributed.py). The trainer runs detached from
  # SSH (launch/tpu_worker.sh): a lost connection does not stop it.
  local env_words=(env STRONGAUDIO_DISTRIBUTED=1 "${remote_env[@]+"${remote_env[@]}"}")
  on_workers all "cd $(quote "$remote_dir") && $(quote_all "${env_words[@]}") launch/tpu_worker.sh start $(quote_all "${job_args[@]}")"
  if ((detach)); then
    echo "started; follow it with: launch/tpu_pod.sh attach $name --zone $zone"
  else
    echo "following worker 0's log (Ctrl-C detaches; the run goes on)"
    cmd_attach
  fi
}

cmd_logs() {
  [[ $worker == all ]] || [[ $worker =~ ^[0-9]+$ ]] || die "--worker takes a number or all, not '$worker'"
  is_count "$lines" || die "--lines takes a positive number, not '$lines'"
  on_workers "$worker" "$(worker_cmd logs "$lines")"
}

cmd_status() {
  run "${gcloud_tpu[@]}" describe "$name" "${where[@]}" --format 'value(state,acceleratorType,health)'
  on_workers all "$(worker_cmd status)"
}

cmd_stop() {
  # JAX's preemption service hears SIGTERM on any host and makes all of them stop at the
  # same step; signalling every worker is what a maintenance event does too.
  on_workers all "$(worker_cmd stop)"
  echo "the run saves a checkpoint and exits; following worker 0's log until it does"
  cmd_attach
}

cmd_delete() {
  if ((queued)); then
    run "${gcloud_qr[@]}" delete "$name" "${where[@]}" --force --quiet
  else
    run "${gcloud_tpu[@]}" delete "$name" "${where[@]}" --quiet
  fi
}

"cmd_$command"
