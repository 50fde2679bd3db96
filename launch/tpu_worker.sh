#!/usr/bin/env bash
# The worker side of launch/tpu_pod.sh: runs on every host of a TPU slice, in the checkout that
# `tpu_pod.sh run` copied there (you do not call it yourself, though you may, over SSH).
#
#   launch/tpu_worker.sh start CONFIG WORKDIR [key=value ...]   start training, detached
#   launch/tpu_worker.sh follow    print the log and follow it until the run ends
#   launch/tpu_worker.sh logs [N]  the last N (default 100) lines of the log
#   launch/tpu_worker.sh status    running or not, and the log's last line
#   launch/tpu_worker.sh stop      SIGTERM to the trainer (it saves a checkpoint and exits 0)
#
# The trainer runs under setsid and nohup with no terminal, so a lost SSH session does not
# stop it. Files in RUN_DIR (default: the checkout): train.log (appended to by every run),
# train.pid (the trainer), wrapper.pid (its parent, which logs the exit status).
# Environment: RUN_DIR, PYTHON (default python3), STRONGAUDIO_DISTRIBUTED (see
# strongaudio_jax/parallel/distributed.py; tpu_pod.sh sets it to 1).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
run_dir=${RUN_DIR:-$(dirname "$here")}
log=$run_dir/train.log

die() {
  printf 'tpu_worker.sh on %s: %s\n' "$(hostname)" "$1" >&2
  exit 2
}

running() {
  [[ -f $run_dir/train.pid ]] && kill -0 "$(cat "$run_dir/train.pid")" 2>/dev/null
}

command=${1:-}
[[ $# -gt 0 ]] && shift
case $command in
  start)
    [[ $# -ge 2 ]] || die "start needs CONFIG WORKDIR [key=value ...]"
    if running; then
      die "already running (pid $(cat "$run_dir/train.pid")); stop it first"
    fi
    mkdir -p "$run_dir"
    rm -f "$run_dir/train.pid" "$run_dir/wrapper.pid"
    setsid nohup "$here/tpu_worker.sh" supervise "$@" >/dev/null 2>&1 </dev/null &
    # Started once the trainer's pid is written (the supervisor writes it straight away).
    while [[ ! -s $run_dir/train.pid ]]; do
      kill -0 "$!" 2>/dev/null || die "the supervisor exited at once; see $log"
      sleep 0.1
    done
    echo "$(hostname): started (pid $(cat "$run_dir/train.pid")), log $log"
    ;;
  supervise)  # the detached parent of the trainer (started by `start`)
    echo "$$" >"$run_dir/wrapper.pid"
    echo "== $(date -u '+%Y-%m-%d %H:%M:%S') UTC $(hostname): start" >>"$log"
    "${PYTHON:-python3}" -m strongaudio_jax.cli train --config "$1" --workdir "$2" "${@:3}" \
      >>"$log" 2>&1 &
    echo "$!" >"$run_dir/train.pid.tmp"
    mv "$run_dir/train.pid.tmp" "$run_dir/train.pid"
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
      echo "$(hostname): running (pid $(cat "$run_dir/train.pid"))"
    else
      echo "$(hostname): not running"
    fi
    [[ ! -f $log ]] || tail -n 1 "$log"
    ;;
  stop)
    if running; then
      kill -TERM "$(cat "$run_dir/train.pid")"
      echo "$(hostname): SIGTERM sent to pid $(cat "$run_dir/train.pid")"
    else
      echo "$(hostname): not running"
    fi
    ;;
  *)
    die "unknown command '${command}'; use start, follow, logs, status or stop"
    ;;
esac
