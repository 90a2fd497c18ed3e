#!/usr/bin/env bash
# Checks the rollout scenarios' harness on the real cluster, without Ferry: the test server
# images (e2e/lib/testserver.sh) and the client (e2e/lib/client.sh), with plain Deployments and
# Services applied by kubectl in a throwaway namespace that enforces the restricted Pod
# Security Standard.
#
#   e2e/rollouts-harness.sh          # on the cluster from `make cluster-up`
#
#   1. each behaviour does what it says: ok serves and is ready; never-ready runs, answers / but
#      never becomes ready; crash exits 1 at start (restarts, exit code 1); fail-after answers 200,
#      then 500 on / and /healthz; slow delays /healthz; a missing digest fails to pull;
#   2. the client counts answers, failures and versions through a Service's ClusterIP, and
#      counts the failures while the Service has no ready pod (so it can see a failure);
#   3. a plain RollingUpdate (maxUnavailable 0, maxSurge 1) of 2 replicas from version 1 to 2,
#      with a preStop `sleep 2`, under the client: prints the failed requests and when only
#      version 2 answered; then the same without the preStop hook, for comparison.
# Leaves nothing behind on success (the namespace is deleted); on failure the namespace stays.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CLIENT_DIR=${CLIENT_DIR:-$(mktemp -d /tmp/ferry-e2e-rollouts-harness.XXXXXX)}
source "$here/cluster/lib.sh"
source "$here/images/lib.sh"
source "$here/lib/testserver.sh"
source "$here/lib/client.sh"

NS=${FERRY_E2E_HARNESS_NS:-ferry-e2e-rollouts-harness}
# Set before e2e/lib/client.sh gives it its default.
declare -A IMAGE

kn() { kc -n "$NS" "$@"; }
fail() { echo "FAIL: $*"; exit 1; }
now() { date +%s.%N; }
jp() { kn get "$1" -o jsonpath="$2" 2>/dev/null || true; }

# await SECONDS DESCRIPTION CHECK... — CHECK every half second until it succeeds.
await() {
  local timeout=$1 what=$2 start=$SECONDS
  shift 2
  until "$@"; do
    [ $((SECONDS - start)) -lt "$timeout" ] || fail "timed out after $timeout s waiting for $what"
    sleep 0.5
  done
  echo "waited $((SECONDS - start)) s for $what"
}

diagnose() {
  echo "---- diagnostics for namespace $NS (left for inspection)"
  kn get deployments,replicasets,pods,services,endpointslices -o wide || true
  kn get events --sort-by=.lastTimestamp | tail -n 30 || true
}

# deploy NAME IMAGE [REPLICAS [PRESTOP-SECONDS]] — a Deployment and a Service like the ones
# Ferry makes: restricted security context, readiness on /ready, RollingUpdate with
# maxUnavailable 0 and maxSurge 1.
deploy() {
  local name=$1 image=$2 replicas=${3:-1} prestop=${4:-0} lifecycle=""
  [ "$prestop" = 0 ] || lifecycle="lifecycle: {preStop: {exec: {command: [sleep, \"$prestop\"]}}}"
  kn apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: $name}
spec:
  replicas: $replicas
  selector: {matchLabels: {app: $name}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: $name}}
    spec:
      terminationGracePeriodSeconds: 10
      securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: app
        image: $image
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, failureThreshold: 1}
        securityContext:
          allowPrivilegeEscalation: false
          readOnlyRootFilesystem: true
          capabilities: {drop: [ALL]}
        $lifecycle
---
apiVersion: v1
kind: Service
metadata: {name: $name}
spec:
  selector: {app: $name}
  ports: [{name: http, port: 80, targetPort: http}]
EOF
}

pod_of() { kn get pods -l "app=$1" -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true; }
ip_of() { jp "pod/$(pod_of "$1")" '{.status.podIP}'; }
service_url() { echo "http://$(jp "service/$1" '{.spec.clusterIP}')/"; }
# get URL — "CODE SECONDS BODY" of one request from the node's network namespace.
get() {
  in_ns curl -sS -o "$CLIENT_DIR/body" -w '%{http_code} %{time_total}' --max-time 5 "$1" || true
  echo " $(cat "$CLIENT_DIR/body" 2>/dev/null)"
}

# await_service NAME — until the Service answers at all (a new ClusterIP refuses connections
# until kube-proxy has programmed it).
await_service() {
  local url; url=$(service_url "$1")
  answers_http() { [[ "$(get "$url" 2>/dev/null)" != "000 "* ]]; }
  await 30 "Service $1 to answer" answers_http
}

build_images() {
  local t0; t0=$(now)
  IMAGE[ok1]=$(testserver_ok 1.0.0)
  IMAGE[ok2]=$(testserver_ok 2.0.0)
  IMAGE[never-ready]=$(testserver_never_ready 3.0.0)
  IMAGE[crash]=$(testserver_crash 4.0.0)
  IMAGE[fail-after]=$(testserver_fail_after 5.0.0 8)
  IMAGE[slow]=$(testserver_slow 6.0.0 400)
  IMAGE[missing]=$(testserver_missing)
  local k
  for k in ok1 ok2 never-ready crash fail-after slow missing; do echo "$k: ${IMAGE[$k]}"; done
  echo "measured: building and pushing 6 test server images = $(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}') s"
  [ "$(sort -u < <(printf '%s\n' "${IMAGE[@]}") | wc -l)" = 7 ] || fail "two behaviours share a digest"
}

fresh_namespace() {
  kc delete namespace "$NS" --ignore-not-found --wait --timeout=120s >/dev/null
  kc create namespace "$NS" >/dev/null
  kc label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
  local name
  for name in ok never-ready crash fail-after slow missing; do
    case $name in ok) deploy ok "${IMAGE[ok1]}" ;; *) deploy "$name" "${IMAGE[$name]}" ;; esac
  done
  kn get deployments
}

behaviour_ok() {
  kn rollout status deployment/ok --timeout=60s
  await_service ok
  local answer
  answer=$(get "$(service_url ok)healthz"); echo "GET ok's Service /healthz: $answer"
  [[ "$answer" == "200 "*"version=1.0.0 behaviour=ok path=/healthz code=200"* ]] || fail "unexpected answer"
  answer=$(get "$(service_url ok)nothing"); echo "GET ok's Service /nothing: $answer"
  [[ "$answer" == "404 "* ]] || fail "unexpected answer"
  [ "$(jp "pod/$(pod_of ok)" '{.status.containerStatuses[0].ready}')" = true ] || fail "ok's pod is not ready"
}

behaviour_never_ready() {
  running() { [ "$(jp "pod/$(pod_of never-ready)" '{.status.phase}')" = Running ] && [ -n "$(ip_of never-ready)" ]; }
  await 60 "never-ready's pod to run" running
  sleep 10
  local ready; ready=$(jp "pod/$(pod_of never-ready)" '{.status.containerStatuses[0].ready}')
  echo "never-ready's pod ready after 10 s of running: $ready"
  [ "$ready" = false ] || fail "never-ready became ready"
  local ip answer; ip=$(ip_of never-ready)
  answer=$(get "http://$ip:8080/ready"); echo "GET pod /ready: $answer"; [[ "$answer" == "503 "* ]] || fail "/ready answered ${answer%% *}"
  answer=$(get "http://$ip:8080/"); echo "GET pod /: $answer"; [[ "$answer" == "200 "*"version=3.0.0"* ]] || fail "/ answered ${answer%% *}"
}

behaviour_crash() {
  crashed() {
    local pod; pod=$(pod_of crash)
    [ "$(jp "pod/$pod" '{.status.containerStatuses[0].restartCount}')" -ge 1 ] 2>/dev/null &&
      [ "$(jp "pod/$pod" '{.status.containerStatuses[0].lastState.terminated.exitCode}')" = 1 ]
  }
  await 60 "crash's container to exit 1 and restart" crashed
  local pod; pod=$(pod_of crash)
  echo "crash: restarts $(jp "pod/$pod" '{.status.containerStatuses[0].restartCount}'), last state $(jp "pod/$pod" '{.status.containerStatuses[0].lastState.terminated.reason} exit {.status.containerStatuses[0].lastState.terminated.exitCode} finished {.status.containerStatuses[0].lastState.terminated.finishedAt}')"
  kn logs "$pod" --previous 2>/dev/null | tail -n 2 || true
}

behaviour_fail_after() {
  kn rollout status deployment/fail-after --timeout=60s
  await_service fail-after
  local url answer; url="$(service_url fail-after)"
  answer=$(get "${url}healthz"); echo "GET /healthz at once: $answer"
  # It may already be past its 8 s when the Deployment is seen available; the first answer
  # must be a 200 only if the pod is younger than that.
  local started age
  started=$(jp "pod/$(pod_of fail-after)" '{.status.containerStatuses[0].state.running.startedAt}')
  age=$(($(date +%s) - $(date -d "$started" +%s)))
  if [ "$age" -lt 7 ]; then [[ "$answer" == "200 "* ]] || fail "fail-after answered ${answer%% *} at age $age s"; fi
  five_hundred() { [[ "$(get "${url}healthz")" == "500 "* ]]; }
  await 20 "fail-after to answer 500 on /healthz" five_hundred
  answer=$(get "$url"); echo "GET /: $answer"; [[ "$answer" == "500 "*"code=500"* ]] || fail "/ answered ${answer%% *}"
  answer=$(get "${url}ready"); echo "GET /ready: $answer"; [[ "$answer" == "200 "* ]] || fail "/ready answered ${answer%% *}"
}

behaviour_slow() {
  kn rollout status deployment/slow --timeout=60s
  await_service slow
  local url answer seconds; url="$(service_url slow)"
  answer=$(get "${url}healthz"); echo "GET /healthz: $answer"
  seconds=$(cut -d' ' -f2 <<<"$answer")
  awk -v s="$seconds" 'BEGIN {exit !(s >= 0.4)}' || fail "/healthz took $seconds s, not 0.4 s or more"
  answer=$(get "$url"); echo "GET /: $answer"
  seconds=$(cut -d' ' -f2 <<<"$answer")
  awk -v s="$seconds" 'BEGIN {exit !(s < 0.3)}' || fail "/ took $seconds s"
  # Concurrent slow answers do not wait for each other.
  local t0; t0=$(now)
  for _ in 1 2 3 4; do in_ns curl -sS -o /dev/null --max-time 5 "${url}healthz" & done
  wait
  local took; took=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}')
  echo "4 concurrent /healthz: $took s"
  awk -v s="$took" 'BEGIN {exit !(s < 1.2)}' || fail "4 concurrent slow answers took $took s: served one at a time"
}

behaviour_missing() {
  pull_fails() {
    local reason; reason=$(jp "pod/$(pod_of missing)" '{.status.containerStatuses[0].state.waiting.reason}')
    [ "$reason" = ErrImagePull ] || [ "$reason" = ImagePullBackOff ]
  }
  await 60 "missing's pod to fail its image pull" pull_fails
  echo "missing: $(jp "pod/$(pod_of missing)" '{.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}' | cut -c1-200)"
}

client_counts() {
  local url; url=$(service_url ok)
  answers() { [[ "$(get "$url")" == "200 "* ]]; }
  await 30 "Service ok to answer" answers
  client_start count "$url"
  sleep 3
  # Nothing ready behind the Service: every request fails (refused, as kube-proxy rejects
  # connections to a Service without endpoints).
  # From the scaling on: the pod stops at once on SIGTERM, before it is gone from the API.
  local gone; gone=$(now)
  kn scale deployment/ok --replicas=0 >/dev/null
  kn wait --for=delete pod -l app=ok --timeout=60s >/dev/null
  sleep 2
  kn scale deployment/ok --replicas=1 >/dev/null
  kn rollout status deployment/ok --timeout=60s >/dev/null
  # Ready is not reachable yet: kube-proxy programs the new endpoint a moment later.
  answers_again() { client_only_from count 1.0.0 "$gone" >/dev/null; }
  await 30 "version 1.0.0 to answer the client again" answers_again
  sleep 1
  local back; back=$(client_only_from count 1.0.0 "$gone") || fail "version 1.0.0 does not answer again"
  local summary; summary=$(client_stop count)
  echo "$summary"
  local n f
  n=$(client_requests count); f=$(client_failed count)
  echo "failed requests while the Service had no pod: $(client_failed count "$gone" "$back") of $(client_requests count "$gone" "$back")"
  echo "rate: $(awk -v n="$n" -v a="$(head -n1 "$CLIENT_DIR/count.log" | cut -d' ' -f1)" \
    -v b="$(tail -n1 "$CLIENT_DIR/count.log" | cut -d' ' -f1)" 'BEGIN {printf "%.1f", n / (b - a)}') requests/s"
  [ "$n" -ge 100 ] || fail "only $n requests in ~10 s"
  [ "$f" -ge 10 ] || fail "the client saw only $f failures while the Service had no pod"
  [ "$(client_failed count 0 "$gone")" = 0 ] || fail "failures before the Deployment was scaled to 0"
}

# rolling PRESTOP-SECONDS — 2 replicas of version 1, then version 2, under the client.
rolling() {
  local prestop=$1 name=roll-$1 t0
  deploy "$name" "${IMAGE[ok1]}" 2 "$prestop"
  kn rollout status "deployment/$name" --timeout=90s >/dev/null
  # A new Service's ClusterIP answers only once kube-proxy has programmed it: the client's
  # first failures would otherwise be that, not the rollout's.
  local url; url=$(service_url "$name")
  answers() { [[ "$(get "$url")" == "200 "* ]]; }
  await 30 "Service $name to answer" answers
  client_start "$name" "$url"
  sleep 2
  t0=$(now)
  deploy "$name" "${IMAGE[ok2]}" 2 "$prestop"
  kn rollout status "deployment/$name" --timeout=120s
  local done_at; done_at=$(now)
  # The last old pod may still be terminating (its preStop); give it time to go.
  sleep $((prestop + 3))
  local only; only=$(client_only_from "$name" 2.0.0 "$t0") || fail "version 2.0.0 does not answer alone"
  client_stop "$name"
  local failed; failed=$(client_failed "$name" "$t0")
  echo "measured: failed requests during a plain RollingUpdate (preStop sleep $prestop) = $failed"
  echo "measured: plain RollingUpdate (preStop sleep $prestop): update applied → only 2.0.0 answers = $(awk -v a="$t0" -v b="$only" 'BEGIN {printf "%.1f", b - a}') s"
  echo "measured: plain RollingUpdate (preStop sleep $prestop): update applied → rollout status done = $(awk -v a="$t0" -v b="$done_at" 'BEGIN {printf "%.1f", b - a}') s"
  client_failures "$name" | head -n 10
  [ "$(client_failed "$name" 0 "$t0")" = 0 ] || fail "requests failed before the update"
}

rolling_with_prestop() { rolling 2; }
rolling_without_prestop() { rolling 0; }

# On the way out, a client a failed step left running.
stop_clients() {
  local pidfile
  for pidfile in "$CLIENT_DIR"/*.pid; do
    [ -e "$pidfile" ] || continue
    client_stop "$(basename "$pidfile" .pid)" >/dev/null 2>&1 || true
  done
}

main() {
  trap stop_clients EXIT
  kc get nodes >/dev/null || die "no cluster (make cluster-up)"
  mkdir -p "$CLIENT_DIR"
  echo "client logs in $CLIENT_DIR"
  # Not a `step`: a step runs in a subshell, and the images are needed after it.
  echo "---- build the test server images"
  build_images
  echo "PASS build the test server images"
  step "namespace $NS with a Deployment per behaviour" fresh_namespace
  step "ok: ready, answers with its version" behaviour_ok
  step "never-ready: runs, answers /, never ready" behaviour_never_ready
  step "crash: exits 1 at start" behaviour_crash
  step "fail-after 8: 500 on / and /healthz after 8 s" behaviour_fail_after
  step "slow 400: /healthz takes 400 ms, concurrently" behaviour_slow
  step "missing digest: the pull fails" behaviour_missing
  step "the client counts requests, failures and versions" client_counts
  step "a plain RollingUpdate with preStop sleep 2 under the client" rolling_with_prestop
  step "a plain RollingUpdate without preStop under the client" rolling_without_prestop
  kc delete namespace "$NS" --wait=false >/dev/null
  echo "ALL PASSED"
}

main "$@"
