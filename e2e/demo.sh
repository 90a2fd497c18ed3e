#!/usr/bin/env bash
# `make demo`: Ferry on a real API server, from a fresh clone.
#
# Brings up etcd + kube-apiserver (e2e/apiserver.sh), installs the CRDs, runs `ferry controller`,
# applies examples/ and shows what Ferry reports, including a mistake it diagnoses and the
# recovery once the mistake is fixed. Everything stays up for you to explore; `make demo-down`
# stops it.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${FERRY_APISERVER_DIR:-/tmp/ferry-apiserver}
NS=team-a

down() {
  if [ -f "$DIR/ferry.pid" ]; then
    kill "$(cat "$DIR/ferry.pid")" 2>/dev/null || true
    rm -f "$DIR/ferry.pid"
  fi
  e2e/apiserver.sh down
}

if [ "${1:-}" = down ]; then
  down
  exit 0
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

step "Building ferry and starting a real etcd + kube-apiserver"
cargo build --locked --quiet
eval "$(e2e/apiserver.sh up)"
BIN=$(e2e/build-k8s.sh apiserver | tail -n1)
export PATH="$BIN:$PATH"

step "Installing the CRDs (generated from the Rust types: ferry crds)"
show kubectl apply -f crds/
kubectl wait --for=condition=Established crd --all --timeout=60s > /dev/null

step "Starting the controller (logs: $DIR/ferry.log)"
if [ -f "$DIR/ferry.pid" ]; then kill "$(cat "$DIR/ferry.pid")" 2>/dev/null || true; fi
./target/debug/ferry controller --http-addr 127.0.0.1:18080 > "$DIR/ferry.log" 2>&1 &
echo $! > "$DIR/ferry.pid"
until curl -sf http://127.0.0.1:18080/readyz > /dev/null; do sleep 0.2; done
echo "ferry is ready: http://127.0.0.1:18080/metrics"

step "A mistake: the Application arrives before its Environments"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
show kubectl -n "$NS" apply -f examples/shop.yaml
kubectl -n "$NS" wait --for=jsonpath='{.status.conditions[?(@.type=="Stalled")].status}'=True application/shop --timeout=30s > /dev/null
show kubectl -n "$NS" get applications
show kubectl -n "$NS" get application shop -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

step "The fix: apply the Environments; Ferry notices by itself"
show kubectl -n "$NS" apply -f examples/environments.yaml
show kubectl -n "$NS" wait --for=condition=Ready environment --all --timeout=30s
show kubectl -n "$NS" wait --for=condition=Ready application/shop --timeout=30s
show kubectl -n "$NS" get environments
show kubectl -n "$NS" get applications

step "The API server rejects what is wrong, with a message that says how to fix it"
cat <<'YAML' > "$DIR/bad.yaml"
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: loop}
spec: {upstream: loop, health: {progressDeadline: 2m, stabilizationWindow: 5m}}
YAML
show kubectl -n "$NS" apply -f "$DIR/bad.yaml" || true

step "Events Ferry recorded"
show kubectl -n "$NS" get events.v1.events.k8s.io --sort-by=.metadata.creationTimestamp -o custom-columns=OBJECT:.regarding.name,TYPE:.type,REASON:.reason,MESSAGE:.note

cat <<EOF2

Ferry keeps running. Explore with:
  export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH
  kubectl -n $NS describe application shop
  kubectl explain application.spec.build
  curl -s http://127.0.0.1:18080/metrics | grep ferry_
Stop everything with: make demo-down
EOF2
