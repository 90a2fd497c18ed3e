#!/usr/bin/env bash
# `make demo-apiserver`: Ferry on a real API server without a node (no root needed).
#
# Brings up etcd + kube-apiserver (e2e/apiserver.sh), installs the CRDs, runs `ferry controller`,
# applies examples/ and shows what Ferry reports, including a mistake it diagnoses and the
# recovery once the mistake is fixed. Everything stays up for you to explore;
# `make demo-apiserver-down` stops it.
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

root=$(pwd)
source e2e/lib/story.sh

chapter "Building ferry and starting a real etcd + kube-apiserver"
cargo build --locked --quiet
eval "$(e2e/apiserver.sh up)"
BIN=$(e2e/build-k8s.sh apiserver | tail -n1)
export PATH="$BIN:$PATH"

chapter "Installing the CRDs (generated from the Rust types: ferry crds)"
show kubectl apply -f crds/
kubectl wait --for=condition=Established crd --all --timeout=60s > /dev/null

chapter "Starting the controller (logs: $DIR/ferry.log)"
if [ -f "$DIR/ferry.pid" ]; then kill "$(cat "$DIR/ferry.pid")" 2>/dev/null || true; fi
"$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/debug/ferry" controller --http-addr 127.0.0.1:18080 > "$DIR/ferry.log" 2>&1 &
echo $! > "$DIR/ferry.pid"
until curl -sf http://127.0.0.1:18080/readyz > /dev/null; do sleep 0.2; done
echo "ferry is ready: http://127.0.0.1:18080/metrics"

tell_story

cat <<EOF2

Ferry keeps running. Explore with:
  export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH
  kubectl -n $NS describe application shop
  kubectl explain application.spec.build
  curl -s http://127.0.0.1:18080/metrics | grep ferry_
Stop everything with: make demo-apiserver-down
EOF2
