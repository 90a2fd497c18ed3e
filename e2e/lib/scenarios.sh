# shellcheck shell=bash
# Running a suite of end-to-end scenarios (e2e/builds.sh, e2e/rollouts.sh): independent ones
# side by side, each in its own process under its deadline, the others one by one, with a
# PASS/FAIL line per scenario, its `measured:` lines, and a failed one's whole log.
#
# The suite script defines $here (its own directory, e2e/), SUITE (builds, rollouts: the script is e2e/$SUITE.sh and takes
# `--one NAME` and `--diagnose NAME`), PARALLEL and ALONE (scenario names), DEADLINE (seconds
# per name), RUN_ID, OUT, SYSTEM and NS_PREFIX; its RUN_ID and OUT are read from
# FERRY_E2E_<SUITE>_RUN and FERRY_E2E_<SUITE>_OUT, which each scenario's process inherits.

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
