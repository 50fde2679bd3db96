#!/usr/bin/env bash
# The worker side of launch/tpu_pod.sh: runs on every host of a TPU slice, in the checkout that
# `tpu_pod.sh run` copied there (you do not call it yourself, though you may, over SSH).
#
#   launch/tpu_worker.sh start CONFIG WORKDIR [key=value ...]   start training, detached
#   launch/tpu_worker.sh start --job tag CONFIG [key=value ...]  start another job (common.sh)
#   launch/tpu_worker.sh follow    print the log and follow it until the run ends
#   launch/tpu_worker.sh logs [N]  the last N (default 100) lines of the log
#   launch/tpu_worker.sh status    running or not, and the log's last line
#   launch/tpu_worker.sh stop      SIGTERM to the job (training saves a checkpoint, exits 0)
#
# The job runs under setsid and nohup with no terminal, so a lost SSH session does not stop
# it. Files in RUN_DIR (default: the checkout): job.log (appended to by every run), job.pid
# (the job's process), wrapper.pid (its parent, which logs the exit status).
# Environment: RUN_DIR, PYTHON (default python3), STRONGAUDIO_DISTRIBUTED (see
# strongaudio_jax/parallel/distributed.py; tpu_pod.sh sets it to 1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
source "$here/common.sh"
run_dir=${RUN_DIR:-$(dirname "$here")}
log=$run_dir/job.log

die() {
  printf 'tpu_worker.sh on %s: %s\n' "$(hostname)" "$1" >&2
  exit 2
}

running() {
  [[ -f $run_dir/job.pid ]] && kill -0 "$(cat "$run_dir/job.pid")" 2>/dev/null
}

command=${1:-}
[[ $# -gt 0 ]] && shift
case $command in
  start | supervise)
    if [[ ${1:-} == --job ]]; then
      set_job "${2:-}"
      shift 2
    fi
    [[ ${1:-} != -- ]] || shift
    job_command "$@"
    job_forward "$@"
    ;;&
  start)
    if running; then
      die "already running (pid $(cat "$run_dir/job.pid")); stop it first"
    fi
    mkdir -p "$run_dir"
    rm -f "$run_dir/job.pid" "$run_dir/wrapper.pid"
    setsid nohup "$here/tpu_worker.sh" supervise "${job_args[@]}" >/dev/null 2>&1 </dev/null &
    # Started once the job's pid is written (the supervisor writes it straight away).
    while [[ ! -s $run_dir/job.pid ]]; do
      kill -0 "$!" 2>/dev/null || die "the supervisor exited at once; see $log"
      sleep 0.1
    done
    echo "$(hostname): started strongaudio $JOB (pid $(cat "$run_dir/job.pid")), log $log"
    ;;
  supervise)  # the detached parent of the job (started by `start`)
    echo "$$" >"$run_dir/wrapper.pid"
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC $(hostname): start strongaudio $JOB" >>"$log"
    "${job_cmd[@]}" >>"$log" 2>&1 &
    echo "$!" >"$run_dir/job.pid.tmp"
    mv "$run_dir/job.pid.tmp" "$run_dir/job.pid"
    status=0
    wait "$!" || status=$?
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC $(hostname): exit status $status" >>"$log"
    ;;
  follow)
    touch "$log"
    if [[ -f $run_dir/wrapper.pid ]] && kill -0 "$(cat "$run_dir/wrapper.pid")" 2>/dev/null; then
      tail -n 50 -F --pid="$(cat "$run_dir/wrapper.pid")" "$log"
    else
      tail -n 50 "$log"
    fi
    ;;
  logs)
    lines=${1:-100}
    echo "== $(hostname): $log"
    tail -n "$lines" "$log"
    ;;
  status)
    if running; then
      echo "$(hostname): running (pid $(cat "$run_dir/job.pid"))"
    else
      echo "$(hostname): not running"
    fi
    [[ ! -f $log ]] || tail -n 1 "$log"
    ;;
  stop)
    if running; then
      kill -TERM "$(cat "$run_dir/job.pid")"
      echo "$(hostname): SIGTERM sent to pid $(cat "$run_dir/job.pid")"
    else
      echo "$(hostname): not running"
    fi
    ;;
  *)
    die "unknown command '${command}'; use start, follow, logs, status or stop"
    ;;
esac
