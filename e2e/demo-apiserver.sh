#!/usr/bin/env bash
# `make demo-apiserver`: Ferry on a real API server without a node (no root needed).
#
# Brings up etcd + kube-apiserver (e2e/apiserver.sh), installs the CRDs, runs `ferry controller`,
# applies examples/ and shows what Ferry reports, including a mistake it diagnoses and the
# recovery once the mistake is fixed. Everything stays up for you to explore;
# `make demo-apiserver-down` stops it. Running it again restarts the controller and tells the
# story again.
#
# As in `make demo`, slow steps print one line each and their output goes to a log,
# $FERRY_CACHE/logs/demo-apiserver-<time>.log, whose last lines are shown if one fails.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${FERRY_APISERVER_DIR:-/tmp/ferry-apiserver}
FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}

down() {
  local pid
  for pid in ferry gitserver; do
    if [ -f "$DIR/$pid.pid" ]; then
      kill "$(cat "$DIR/$pid.pid")" 2>/dev/null || true
      rm -f "$DIR/$pid.pid"
    fi
  done
  e2e/apiserver.sh down
}

if [ "${1:-}" = down ]; then
  down
  exit 0
fi

root=$(pwd)
source e2e/lib/progress.sh
source e2e/lib/ferry.sh
source e2e/lib/story.sh
# The git server on loopback (the cluster's own, built from e2e/cluster/gitserver); no registry:
# without a node, build pods never run here.
GIT_URL=http://127.0.0.1:18081
REGISTRY=127.0.0.1:5999
STORY_BUILDS=0

mkdir -p "$FERRY_CACHE/logs"
FERRY_LOG="$FERRY_CACHE/logs/demo-apiserver-$(date +%Y%m%d-%H%M%S).log"
export FERRY_LOG
: >"$FERRY_LOG"
ls -1t "$FERRY_CACHE"/logs/demo-apiserver-*.log | tail -n +6 | xargs -r rm -f
trap '[ $? -eq 0 ] || echo "The demo failed. Full log: $FERRY_LOG" >&2' EXIT

# start_controller — (re)starts `ferry controller` and waits, with a deadline, for its /readyz.
start_gitserver() {
  local bin deadline=$((SECONDS + 30))
  bin="$FERRY_CACHE/tools/gitserver-$(cat e2e/cluster/gitserver/go.mod e2e/cluster/gitserver/main.go |
    sha256sum | cut -c1-16)"
  if [ ! -x "$bin" ]; then
    mkdir -p "$FERRY_CACHE/tools"
    (cd e2e/cluster/gitserver && GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
      go build -trimpath -o "$bin.tmp" . && mv "$bin.tmp" "$bin")
  fi
  if [ -f "$DIR/gitserver.pid" ]; then kill "$(cat "$DIR/gitserver.pid")" 2>/dev/null || true; fi
  mkdir -p "$DIR/git"
  "$bin" -listen 127.0.0.1:18081 -root "$DIR/git" > "$DIR/gitserver.log" 2>&1 &
  echo $! > "$DIR/gitserver.pid"
  until curl -s -o /dev/null http://127.0.0.1:18081/; do
    [ $SECONDS -lt $deadline ] || { echo "the git server did not listen on 127.0.0.1:18081"; return 1; }
    sleep 0.2
  done
}

start_controller() {
  local deadline=$((SECONDS + 60))
  if [ -f "$DIR/ferry.pid" ]; then kill "$(cat "$DIR/ferry.pid")" 2>/dev/null || true; fi
  "$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/debug/ferry" controller \
    --http-addr 127.0.0.1:18080 --webhook-addr 127.0.0.1:19443 \
    --build-image ferry:demo-apiserver > "$DIR/ferry.log" 2>&1 &
  echo $! > "$DIR/ferry.pid"
  until curl -sf http://127.0.0.1:18080/readyz > /dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "gave up after 60s waiting for the controller's /readyz on 127.0.0.1:18080; its log: $DIR/ferry.log"
      return 1
    fi
    sleep 0.2
  done
}

echo "Details of every step go to $FERRY_LOG"
chapter "Building ferry and starting a real etcd + kube-apiserver"
slow_step "building ferry (cargo build)" cargo build --locked
# Before apiserver.sh, so that a build from source shows its progress line here.
BIN=$(e2e/build-k8s.sh apiserver | tail -n1)
export PATH="$BIN:$PATH"
up=$(e2e/apiserver.sh up 2>>"$FERRY_LOG")
eval "$up"

chapter "Installing the CRDs (generated from the Rust types: ferry crds)"
show kubectl apply -f crds/
await "every CRD to be Established" \
  kubectl wait --for=condition=Established crd --all --timeout="$STORY_WAIT"

chapter "Starting the git server and the controller (logs: $DIR/ferry.log)"
slow_step "starting the git server on 127.0.0.1:18081" start_gitserver
start_controller
echo "ferry is ready: http://127.0.0.1:18080/metrics"

STORY_HINT="the controller's log: $DIR/ferry.log"
tell_story

cat <<EOF2

Ferry keeps running. Explore with:
  export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH
  kubectl -n $STORY_NS describe application shop
  kubectl explain application.spec.build
  curl -s http://127.0.0.1:18080/metrics | grep ferry_
Stop everything with: make demo-apiserver-down
EOF2
