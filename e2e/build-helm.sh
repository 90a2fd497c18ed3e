#!/usr/bin/env bash
# Builds helm from its Go module into a cache outside the repository keyed by version, so the
# second run is a no-op. Helm ships no Debian package and release binaries cannot be fetched
# here; its module has no replace directives, so `go install helm.sh/helm/v3/cmd/helm@<version>`
# builds exactly the dependency versions helm releases with.
#
#   e2e/build-helm.sh     # prints the bin directory (holding `helm`) on its last line
#
# The build prints one line when it starts and one with the elapsed time when it ends; the
# `go: downloading` chatter goes to build.log beside the binary.
set -euo pipefail

HELM_VERSION=${HELM_VERSION:-v3.22.0}
CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
DIR="$CACHE/helm-$HELM_VERSION"
BIN="$DIR/bin"

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

if [ ! -x "$BIN/helm" ]; then
  mkdir -p "$BIN"
  log="$DIR/build.log"
  : > "$log"
  started=$SECONDS
  echo "building helm $HELM_VERSION (log: $log)" >&2
  # Stamp the versions as helm's own Makefile does: `helm version` reports the release, and
  # `helm lint`/`helm template` assume the Kubernetes minor its client-go comes from (one
  # ahead in the major: client-go v0.N is Kubernetes v1.N) instead of the built-in v1.20.
  gomod=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" 2>> "$log" | jq -r .GoMod)
  client_go=$(awk '$1 == "k8s.io/client-go" { print $2 }' "$gomod")
  [ -n "$client_go" ] || { echo "no k8s.io/client-go in $gomod" >&2; exit 1; }
  minor=${client_go#v0.}; minor=${minor%%.*}
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ld="$ld -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$minor"
  done
  # `go install` writes the binary only when the build succeeded, so a failed or interrupted
  # build never leaves a half-written `helm` for the check above to trust.
  if ! GOBIN="$BIN" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >> "$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "building helm $HELM_VERSION failed; the full log is $log" >&2
    exit 1
  fi
  echo "built helm $HELM_VERSION in $((SECONDS - started)) s" >&2
  echo "measured: helm build = $((SECONDS - started)) s" >&2
fi

echo "$BIN"
