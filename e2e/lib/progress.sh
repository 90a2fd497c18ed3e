# shellcheck shell=bash
# One line per slow step on the terminal, the step's own output in a log file (sourced, not run).
#
#   slow_step "building CoreDNS v1.12.4" build_coredns
#   building CoreDNS v1.12.4 ... done in 2m17s
#
# A step that fails prints the last 20 lines of the log and its path, so a new user sees what
# went wrong without scrolling through 500 lines of `go: downloading` that came before it.
#
#   FERRY_LOG           the log file the steps' output is appended to (the caller picks it)
#   FERRY_PROGRESS_FD   where progress lines go (default: stderr). e2e/demo.sh sends everything
#                       else of cluster-up to the log and only these lines to the terminal.

# progress_fd — the file descriptor progress lines are written to.
progress_fd() { echo "${FERRY_PROGRESS_FD:-2}"; }

# say TEXT... — a progress line.
say() { printf '%s\n' "$*" >&"$(progress_fd)"; }

# duration SECONDS — 6m12s, or 21s under a minute.
duration() {
  if [ "$1" -ge 60 ]; then printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); else printf '%ds' "$1"; fi
}

# slow_step WHAT CMD... — runs CMD (a command or a function) with errexit in force, its stdout and
# stderr appended to $FERRY_LOG, and prints "WHAT ... done in 1m02s". On failure prints the tail
# of the log and where it is, and returns CMD's exit status.
#
# Call it as a command of its own, never in an `if` condition or next to `||` or `&&`: bash
# ignores errexit for everything run from there, subshells included, so a function's failing
# command would not stop it and the step would report the status of its last command only.
slow_step() {
  local what=$1 start=$SECONDS rc fd
  shift
  # Not inside the `if` below, where it would always look ignored.
  local errexit
  errexit=$(set +e; (set -e; false; echo ignored); exit 0)
  if [ "$errexit" = ignored ]; then
    echo "slow_step \"$what\" called where errexit is ignored (after || or &&, or in a condition)" >&2
    return 2
  fi
  fd=$(progress_fd)
  : "${FERRY_LOG:?slow_step needs FERRY_LOG}"
  mkdir -p "$(dirname "$FERRY_LOG")"
  printf '\n==== %s: %s\n' "$(date '+%F %T')" "$what" >>"$FERRY_LOG"
  printf '%s ... ' "$what" >&"$fd"
  # A subshell outside any `||` or `if`: errexit would be ignored there, and a function's first
  # failing command would not stop it.
  set +e
  (set -e; "$@") </dev/null >>"$FERRY_LOG" 2>&1
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    printf 'done in %s\n' "$(duration $((SECONDS - start)))" >&"$fd"
    return 0
  fi
  # shellcheck disable=SC2034 # read by the caller's exit handler (e.g. e2e/demo.sh)
  SLOW_STEP_SHOWED_LOG=1   # the caller's exit handler need not show the same lines again
  {
    printf 'FAILED after %s (exit %d). Last lines of the log:\n' "$(duration $((SECONDS - start)))" $rc
    tail -n 20 "$FERRY_LOG" | sed 's/^/  | /'
    printf 'Full log: %s\n' "$FERRY_LOG"
  } >&"$fd"
  return $rc
}
