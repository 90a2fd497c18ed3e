# shellcheck shell=bash
# Running a suite of end-to-end scenarios (e2e/builds.sh, e2e/rollouts.sh):
# independent ones side by side, each in its own process under its deadline, the others one by
# one, with a PASS/FAIL line per scenario, its `measured:` lines, and a failed one's whole log;
# and what every suite's scenarios use: kn/jp/has, now/since, await, controller_pod, metrics.
#
# The suite script defines $here (its own directory, e2e/), `fail`, SUITE (builds, rollouts: the
# script is e2e/$SUITE.sh and takes `--one NAME` and `--diagnose NAME`),
# PARALLEL and ALONE (scenario names), DEADLINE (seconds per name), RUN_ID, OUT, SYSTEM and
# NS_PREFIX, and may set AWAIT_EVERY; its RUN_ID and OUT are read from FERRY_E2E_<SUITE>_RUN
# and FERRY_E2E_<SUITE>_OUT, which each scenario's process inherits.

# kn ARGS... — kubectl in the scenario's namespace $NS; jp KIND/NAME JSONPATH — a field there,
# empty when the object or the field is missing; has KIND NAME — whether it exists.
kn() { kc -n "$NS" "$@"; }
jp() { kn get "$1" -o jsonpath="$2" 2>/dev/null || true; }
has() { kn get "$1" "$2" -o name >/dev/null 2>&1; }

# now — the time in seconds, with nanoseconds; since T — seconds from T to now, two decimals.
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

# await SECONDS DESCRIPTION CHECK... — runs CHECK every $POLL seconds (default the suite's
# AWAIT_EVERY, else 1) until it succeeds. CHECK returns 2 when waiting longer is pointless (it
# ended otherwise than awaited: a build failed, a rollout was judged).
await() {
  local timeout=$1 what=$2 start=$SECONDS rc
  shift 2
  while true; do
    if "$@"; then
      echo "waited $((SECONDS - start)) s for $what"
      return 0
    else
      rc=$?
    fi
    [ "$rc" -ne 2 ] || fail "gave up waiting for $what: it cannot happen any more"
    [ $((SECONDS - start)) -lt "$timeout" ] || fail "timed out after ${timeout} s waiting for $what"
    sleep "${POLL:-${AWAIT_EVERY:-1}}"
  done
}

# controller_pod — the running Ferry pod in $SYSTEM; metrics — what its /metrics says now.
controller_pod() {
  kc -n "$SYSTEM" get pods -l app.kubernetes.io/name=ferry --field-selector=status.phase=Running \
    -o jsonpath='{.items[0].metadata.name}'
}
metrics() {
  kc get --raw "/api/v1/namespaces/$SYSTEM/pods/$(controller_pod):8080/proxy/metrics"
}

# scenario_group NAME... — runs them side by side, each under its deadline, and reports each.
scenario_group() {
  local names=("$@") name pids=() i rc took prefix="FERRY_E2E_${SUITE^^}"
  for name in "${names[@]}"; do
    (
      start=$SECONDS rc=0
      # shellcheck disable=SC2154 # $here is the suite script's
      env "${prefix}_RUN=$RUN_ID" "${prefix}_OUT=$OUT" \
        timeout -k 10 "${DEADLINE[$name]}" "$here/$SUITE.sh" --one "$name" >"$OUT/$name.log" 2>&1 \
        || rc=$?
      echo $((SECONDS - start)) >"$OUT/$name.seconds"
      exit $rc
    ) &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    name=${names[$i]}
    set +e; wait "${pids[$i]}"; rc=$?; set -e
    took=$(cat "$OUT/$name.seconds" 2>/dev/null || echo "?")
    if [ $rc -eq 0 ]; then
      echo "PASS $SUITE/$name (${took} s)"
      grep -E '^(measured|note):' "$OUT/$name.log" | sed 's/^/    /' || true
      PASSED=$((PASSED + 1))
    else
      if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
        echo "FAIL $SUITE/$name: no verdict within its deadline of ${DEADLINE[$name]} s"
        # Killed mid-wait: it printed no diagnostics itself (nor stopped what it started).
        env "${prefix}_RUN=$RUN_ID" "${prefix}_OUT=$OUT" \
          "$here/$SUITE.sh" --diagnose "$name" >>"$OUT/$name.log" 2>&1 || true
      else
        echo "FAIL $SUITE/$name (${took} s)"
      fi
      echo "---- log of $SUITE/$name ($OUT/$name.log)"
      sed 's/^/    /' "$OUT/$name.log"
      FAILED+=("$name")
    fi
  done
}

# run_scenarios [NAME...] — the named scenarios (default all): PARALLEL ones side by side, then
# ALONE ones one by one; on success their namespaces are deleted. Fails if one failed.
run_scenarios() {
  local all=("${PARALLEL[@]}" "${ALONE[@]}") wanted=("$@") name
  [ ${#wanted[@]} -gt 0 ] || wanted=("${all[@]}")
  for name in "${wanted[@]}"; do
    [ -n "${DEADLINE[$name]:-}" ] || die "no scenario '$name'; there are: ${all[*]}"
  done
  mkdir -p "$OUT"
  echo "---- ${SUITE%s} scenarios, run $RUN_ID: ${wanted[*]} (logs in $OUT)"
  kc -n "$SYSTEM" rollout status deployment/ferry --timeout=60s >/dev/null \
    || die "Ferry is not Ready in $SYSTEM (install it first: e2e/install.sh)"
  if declare -F before_scenarios >/dev/null; then before_scenarios; fi
  PASSED=0 FAILED=()
  local side=() n
  for name in "${PARALLEL[@]}"; do [[ " ${wanted[*]} " == *" $name "* ]] && side+=("$name"); done
  [ ${#side[@]} -eq 0 ] || scenario_group "${side[@]}"
  for name in "${ALONE[@]}"; do [[ " ${wanted[*]} " == *" $name "* ]] && scenario_group "$name"; done
  n=${#FAILED[@]}
  echo "$SUITE: $PASSED passed, $n failed${FAILED[*]:+ (${FAILED[*]})}"
  [ "$n" -eq 0 ] || return 1
  for name in "${wanted[@]}"; do
    kc delete namespace "$NS_PREFIX-$name" --ignore-not-found --wait=false >/dev/null
  done
}
