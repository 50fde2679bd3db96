# shellcheck shell=bash
# Helpers shared by the launchers (sourced, not run).
#
# Dry run: with DRY_RUN=1 (or a launcher's --dry-run flag) every command a launcher would run
# is printed, shell-quoted and prefixed with "+ ", instead of being run; environment a command
# gets is printed as "+ export NAME=value" lines first.

DRY_RUN=${DRY_RUN:-0}
PYTHON=${PYTHON:-python3}

# quote WORD: WORD as one shell word, readably: bare when safe, else in single quotes (double
# quotes when it holds single quotes and nothing double quotes would expand), else escaped.
quote() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  elif [[ $1 != *"'"* ]]; then
    printf "'%s'" "$1"
  elif [[ ! $1 =~ [\$\`\\\"!] ]]; then
    printf '"%s"' "$1"
  else
    printf '%q' "$1"
  fi
}

# quote_all WORD...: the words quoted and joined by spaces (a command line to pass on).
quote_all() {
  local word sep=""
  for word in "$@"; do
    printf '%s' "$sep"
    quote "$word"
    sep=" "
  done
}

# run CMD [ARG...]: runs the command, or prints it in a dry run.
run() {
  if [[ $DRY_RUN == 1 ]]; then
    printf '+ %s\n' "$(quote_all "$@")"
  else
    "$@"
  fi
}

# export_env NAME=VALUE...: exports the variables (and prints them in a dry run).
export_env() {
  local kv
  for kv in "$@"; do
    # shellcheck disable=SC2163  # exporting the NAME=VALUE pair held in $kv is the point
    export "$kv"
    if [[ $DRY_RUN == 1 ]]; then
      printf '+ export %s=%s\n' "${kv%%=*}" "$(quote "${kv#*=}")"
    fi
  done
}

# die MESSAGE: one line on stderr, exit 2 (a usage error).
die() {
  printf '%s: %s\n' "$(basename "$0")" "$1" >&2
  exit 2
}

# is_count VALUE: a positive integer?
is_count() {
  [[ $1 =~ ^[1-9][0-9]*$ ]]
}

# The job a launcher starts: `--job JOB` (default train) picks the `strongaudio` subcommand, and
# the arguments after the launcher's own are read as that job takes them:
#   train          CONFIG WORKDIR [key=value ...]  strongaudio train --config CONFIG --workdir WORKDIR ...
#   tag, caption   CONFIG [key=value ...]          strongaudio tag --config CONFIG ... (no work dir:
#                                                  output.dir comes from the config or an override)
#   any other JOB  -- ARG ...                      strongaudio JOB ARG ..., e.g.
#                                                  --job finetune -- --from EXPORT --task demo --out DIR
JOB=train
# Jobs that join the launched processes (jax.distributed) and split their work; any other job
# would run once per process, so it is refused on more than one.
MULTI_PROCESS_JOBS=" train tag caption finetune "

# set_job NAME: checks and sets JOB.
set_job() {
  [[ $1 =~ ^[a-z][a-z-]*$ ]] || die "--job takes a strongaudio subcommand (train, tag, caption, finetune, ...), not '$1'"
  JOB=$1
}

# job_kind: "config+workdir" (train), "config" (tag, caption) or "verbatim" (the others).
job_kind() {
  case $JOB in
    train) echo config+workdir ;;
    tag | caption) echo config ;;
    *) echo verbatim ;;
  esac
}

# job_usage: the arguments the job takes after the launcher's options (for usage lines).
job_usage() {
  case $(job_kind) in
    config+workdir) echo "CONFIG WORKDIR [key=value ...]" ;;
    config) echo "CONFIG [key=value ...]" ;;
    verbatim) echo "-- ARG ... (the arguments of strongaudio $JOB)" ;;
  esac
}

# job_command ARG...: sets the array job_cmd to `strongaudio JOB ...` (the python -m form) for
# the job's arguments; a usage error when they are too few.
# shellcheck disable=SC2034  # job_cmd is read by the scripts that source this file
job_command() {
  case $(job_kind) in
    config+workdir)
      [[ $# -ge 2 ]] || die "$JOB needs $(job_usage)"
      job_cmd=("$PYTHON" -m strongaudio_jax.cli "$JOB" --config "$1" --workdir "$2" "${@:3}") ;;
    config)
      [[ $# -ge 1 ]] || die "$JOB needs $(job_usage)"
      job_cmd=("$PYTHON" -m strongaudio_jax.cli "$JOB" --config "$1" "${@:2}") ;;
    verbatim)
      job_cmd=("$PYTHON" -m strongaudio_jax.cli "$JOB" "$@") ;;
  esac
}

# job_forward ARG...: sets the array job_args to the job's arguments as another launcher script
# takes them (slurm.sbatch, tpu_worker.sh): `--job JOB` unless it is train, `--` before the
# arguments of a verbatim job.
# shellcheck disable=SC2034  # job_args is read by the scripts that source this file
job_forward() {
  job_args=()
  [[ $JOB == train ]] || job_args+=(--job "$JOB")
  [[ $(job_kind) != verbatim ]] || job_args+=(--)
  job_args+=("$@")
}

# check_processes N: a usage error when N > 1 processes would each run a job that does not
# split its work between them.
check_processes() {
  (($1 == 1)) || [[ $MULTI_PROCESS_JOBS == *" $JOB "* ]] ||
    die "strongaudio $JOB runs in one process (only train, tag, caption and finetune split their work over several); launch it with one"
}

# run_processes N PER_DEVICE CMD [ARG...]: starts N copies of CMD on this machine with
# JAX_PROCESS_ID=0..N-1 (and JAX_LOCAL_DEVICE_IDS=i when PER_DEVICE is 1), each output line
# prefixed with [pI]; waits for all. If one fails the others are killed and its status is
# returned. SIGTERM / SIGINT to this script is passed on as SIGTERM to every process.
run_processes() {
  local n=$1 per_device=$2 i
  shift 2
  ((BASH_VERSINFO[0] > 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] >= 1))) ||
    die "needs bash 5.1 or newer (for wait -n -p); this is bash $BASH_VERSION"
  pids=()
  for ((i = 0; i < n; i++)); do
    local cmd=(env "JAX_PROCESS_ID=$i")
    ((per_device)) && cmd+=("JAX_LOCAL_DEVICE_IDS=$i")
    cmd+=("$@")
    if [[ $DRY_RUN == 1 ]]; then
      run "${cmd[@]}"
      continue
    fi
    "${cmd[@]}" > >(sed -u "s/^/[p$i] /") 2>&1 &
    pids+=("$!")
  done
  [[ $DRY_RUN != 1 ]] || return 0

  # Passed on, not acted on here: the processes save a checkpoint together and exit.
  trap 'kill -TERM "${pids[@]}" 2>/dev/null || true' TERM INT
  local status=0 running=("${pids[@]}") finished rc pid remaining
  while ((${#running[@]} > 0)); do
    finished=""
    rc=0
    wait -n -p finished "${running[@]}" || rc=$?
    [[ -n ${finished:-} ]] || continue  # a signal interrupted the wait (and unset finished)
    remaining=()
    for pid in "${running[@]}"; do
      [[ $pid == "$finished" ]] || remaining+=("$pid")
    done
    running=("${remaining[@]+"${remaining[@]}"}")
    if ((rc != 0 && status == 0)); then
      status=$rc
      echo "$(basename "$0"): process $finished exited with status $rc; killing the others" >&2
      # The others would wait on it forever in a collective: nothing they could save is
      # consistent now. The last committed checkpoint is what a rerun resumes from.
      ((${#running[@]} == 0)) || kill -KILL "${running[@]}" 2>/dev/null || true
    fi
  done
  trap - TERM INT
  return "$status"
}

# free_port: a free TCP port on this machine (for a loopback coordinator).
free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
