#!/usr/bin/env bash
# Builds kwok (fake nodes whose pods go through real status transitions, for the scale tier)
# from its Go module into a cache outside the repository keyed by version, so the second run
# is a no-op. kwok's module has no replace directives, so `go install` builds it as released.
#
#   e2e/build-kwok.sh     # prints the bin directory (holding `kwok` and `stages.yaml`) on its
#                         # last line
#
# `stages.yaml` is kwok's own "fast" stages from the same module (nodes initialised and kept
# alive by heartbeats; pods scheduled, running and ready at once, deleted when asked): the
# kwok binary alone simulates nothing without them.
set -euo pipefail

KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
DIR="$CACHE/kwok-$KWOK_VERSION"
BIN="$DIR/bin"

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

if [ ! -x "$BIN/kwok" ]; then
  mkdir -p "$BIN"
  log="$DIR/build.log"
  started=$SECONDS
  echo "building kwok $KWOK_VERSION (log: $log)" >&2
  # `go install` writes the binary only when the build succeeded.
  if ! GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" > "$log" 2>&1; then
    tail -n 30 "$log" >&2
    exit 1
  fi
  echo "built kwok $KWOK_VERSION in $((SECONDS - started))s" >&2
fi
if [ ! -s "$BIN/stages.yaml" ]; then
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | jq -r .Dir)
  for stage in node/fast/node-initialize node/heartbeat/node-heartbeat pod/fast/pod-ready \
      pod/fast/pod-complete pod/fast/pod-delete; do
    echo "---"
    cat "$src/kustomize/stage/$stage.yaml"
  done > "$BIN/stages.yaml.tmp"
  mv "$BIN/stages.yaml.tmp" "$BIN/stages.yaml"
fi
echo "$BIN"
