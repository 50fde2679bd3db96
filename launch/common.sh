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
