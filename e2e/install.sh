#!/usr/bin/env bash
# End to end: Ferry on the real single-node cluster, installed the way a user installs it.
#
#   e2e/install.sh            # on the cluster from `make cluster-up` (brought up if needed)
#
# Builds the static ferry binary (x86_64-unknown-linux-musl), wraps it in an image pushed to the
# cluster's registry, installs CRDs + RBAC + Deployment with one `kubectl apply`, then checks:
#   1. the controller becomes Ready (its /readyz probe passes once its caches synced, which
#      needs every list/watch the ClusterRole grants) and runs non-root, read-only;
#   2. an Application applied before its Environments is Stalled, then Ready once they exist;
#   3. an Environment aimed at another namespace waits for that namespace's consent;
#   4. /metrics answers through the API server's pod proxy;
#   5. deleting the pod (SIGTERM) shuts the controller down cleanly and a new one takes over.
# Leaves the cluster up; `make cluster-down` removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/cluster/lib.sh"
source "$here/lib/ferry.sh"

SYSTEM=ferry-system
TEAM=ferry-e2e-team
TARGET=ferry-e2e-target
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; jobs -p | xargs -r kill 2>/dev/null || true' EXIT

diagnose() {
  echo "---- diagnostics"
  kc -n "$SYSTEM" get all -o wide || true
  kc -n "$SYSTEM" describe pods || true
  kc -n "$SYSTEM" logs deployment/ferry --tail=50 || true
  kc -n "$TEAM" get applications,environments -o yaml || true
  kc get events.v1.events.k8s.io -A --sort-by=.metadata.creationTimestamp | tail -n 30 || true
  echo "---- the cluster is left up; 'make cluster-down' removes it"
}

install_with_one_apply() {
  install_ferry "$IMAGE"
}

runs_unprivileged() {
  local pod; pod=$(kc -n "$SYSTEM" get pods -l app.kubernetes.io/name=ferry -o jsonpath='{.items[0].metadata.name}')
  local uid ro escalation
  uid=$(kc -n "$SYSTEM" get pod "$pod" -o jsonpath='{.spec.securityContext.runAsUser}')
  ro=$(kc -n "$SYSTEM" get pod "$pod" -o jsonpath='{.spec.containers[0].securityContext.readOnlyRootFilesystem}')
  escalation=$(kc -n "$SYSTEM" get pod "$pod" -o jsonpath='{.spec.containers[0].securityContext.allowPrivilegeEscalation}')
  echo "pod $pod: runAsUser=$uid readOnlyRootFilesystem=$ro allowPrivilegeEscalation=$escalation"
  [ "$uid" = 65532 ] && [ "$ro" = true ] && [ "$escalation" = false ]
  # The namespace enforces the restricted Pod Security Standard, so the API server admitted
  # the pod only because it complies.
  [ "$(kc get namespace "$SYSTEM" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" = restricted ]
}

fresh_namespaces() {
  kc delete namespace "$TEAM" "$TARGET" --ignore-not-found --wait --timeout=120s
  kc create namespace "$TEAM"
}

application_waits_for_environments() {
  kc -n "$TEAM" apply -f "$root/examples/shop.yaml"
  kc -n "$TEAM" wait --for=jsonpath='{.status.conditions[?(@.type=="Stalled")].reason}'=EnvironmentNotFound \
    application/shop --timeout=60s
  kc -n "$TEAM" apply -f "$root/examples/environments.yaml"
  kc -n "$TEAM" wait --for=condition=Ready environment --all --timeout=60s
  kc -n "$TEAM" wait --for=condition=Ready application/shop --timeout=60s
  kc -n "$TEAM" get applications,environments
}

environment_waits_for_consent() {
  kc create namespace "$TARGET" --dry-run=client -o yaml | kc apply -f -
  kc -n "$TEAM" apply -f - <<YAML
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: prod-isolated}
spec: {targetNamespace: $TARGET}
YAML
  kc -n "$TEAM" wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=TargetNamespaceNotConsenting \
    environment/prod-isolated --timeout=60s
  kc annotate namespace "$TARGET" --overwrite "ferry.dev/allow-deploy-from=$TEAM"
  kc -n "$TEAM" wait --for=condition=Ready environment/prod-isolated --timeout=60s
}

metrics_served() {
  local pod; pod=$(kc -n "$SYSTEM" get pods -l app.kubernetes.io/name=ferry -o jsonpath='{.items[0].metadata.name}')
  kc get --raw "/api/v1/namespaces/$SYSTEM/pods/$pod:8080/proxy/metrics" > "$tmp/metrics"
  grep 'ferry_reconciles_total{kind="Application"}' "$tmp/metrics"
  grep -q 'ferry_reconcile_duration_seconds_bucket' "$tmp/metrics"
}

graceful_restart() {
  local pod; pod=$(kc -n "$SYSTEM" get pods -l app.kubernetes.io/name=ferry -o jsonpath='{.items[0].metadata.name}')
  kc -n "$SYSTEM" logs -f "$pod" > "$tmp/old.log" 2>&1 &
  local follower=$!
  # `logs -f` prints the log from its start once attached; wait for that before the pod goes.
  local deadline=$((SECONDS + 30))
  until [ -s "$tmp/old.log" ]; do
    [ $SECONDS -lt $deadline ] || { echo "the log stream never attached"; exit 1; }
    sleep 0.2
  done
  kc -n "$SYSTEM" delete pod "$pod" --wait --timeout=60s
  wait "$follower" || true
  grep -q '"shutting down"' "$tmp/old.log" || { tail -n 5 "$tmp/old.log"; exit 1; }
  echo "old pod logged: $(grep -o '"message":"shutting down"' "$tmp/old.log")"
  kc -n "$SYSTEM" rollout status deployment/ferry --timeout=120s
  # The new controller finds everything as it was, and writes nothing new about it.
  kc -n "$TEAM" wait --for=condition=Ready application/shop --timeout=60s
}

main() {
  "$here/cluster/up.sh" > /dev/null
  echo "---- building the static ferry binary and its image"
  IMAGE=$(ferry_image)
  echo "image: $IMAGE"
  step "Ferry installs with one kubectl apply and becomes Ready" install_with_one_apply
  step "the controller runs non-root with a read-only root filesystem" runs_unprivileged
  step "namespaces $TEAM and $TARGET are fresh" fresh_namespaces
  step "an Application applied before its Environments is Stalled, then Ready" application_waits_for_environments
  step "an Environment aimed at another namespace waits for its consent" environment_waits_for_consent
  step "the controller serves Prometheus metrics" metrics_served
  step "deleting the pod shuts the controller down cleanly; a new one takes over" graceful_restart
  echo "ALL PASSED"
}

main "$@"
