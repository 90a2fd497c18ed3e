#!/usr/bin/env bash
# Builds the Kubernetes components and etcd from their Go modules, into a cache outside the
# repository keyed by version, so the second run is a no-op.
#
#   e2e/build-k8s.sh            # prints the bin directory on its last line
#   e2e/build-k8s.sh apiserver  # only etcd, kube-apiserver and kubectl (the integration tier)
#
# A build prints one line per component set ("building Kubernetes v1.34.4 from source ... done
# in 6m12s"); go's own output (hundreds of `go: downloading` lines on a cold cache) goes to
# $FERRY_LOG, by default $FERRY_CACHE/logs/build-k8s.log, whose tail is shown if a build fails.
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every k8s.io/* staging module
# with a path inside its own tree. A small wrapper module requires it and replaces each staging
# module with the published v0.<minor>.<patch> of the same release instead. etcd has the same
# problem (its server module replaces api/client/pkg with ../), so it gets a wrapper of its own;
# keeping the two apart stops minimal version selection from mixing their dependencies.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib/progress.sh"

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.4}
CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
BIN="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
SET=${1:-all}
export FERRY_LOG=${FERRY_LOG:-$CACHE/logs/build-k8s.log}

export GOWORK=off GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local

staging=(api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller)

case "$SET" in
  apiserver) cmds=(kube-apiserver kubectl) ;;
  all) cmds=(kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy) ;;
  *) echo "usage: $0 [all|apiserver]" >&2; exit 2 ;;
esac

missing=()
for c in "${cmds[@]}"; do [ -x "$BIN/$c" ] || missing+=("$c"); done
mkdir -p "$BIN"

build_k8s() {
  local minor staging_version wrapper ld m c p
  minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  staging_version="v0.${K8S_VERSION#v1.}"
  wrapper="$CACHE/wrappers/k8s-$K8S_VERSION"
  mkdir -p "$wrapper"
  {
    echo "module ferry.local/k8sbuild"
    echo
    echo "go 1.24.0"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    for m in "${staging[@]}"; do echo "	k8s.io/$m => k8s.io/$m $staging_version"; done
    echo ")"
  } > "$wrapper/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    for c in kube-apiserver kubectl kube-controller-manager kube-scheduler kubelet kube-proxy; do
      echo "	_ \"k8s.io/kubernetes/cmd/$c\""
    done
    echo ")"
  } > "$wrapper/tools.go"
  # Stamp the version as Kubernetes' own build does (hack/lib/version.sh): kubelet reports it
  # as the node version and tools parse `--version`.
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld="$ld -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean"
    ld="$ld -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  cd "$wrapper"
  [ -f go.sum ] || go mod tidy
  for c in "${missing[@]}"; do
    echo "building $c $K8S_VERSION"
    go build -trimpath -ldflags "$ld" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c"
    mv "$BIN/$c.tmp" "$BIN/$c"
  done
}

build_etcd() {
  local wrapper="$CACHE/wrappers/etcd-$ETCD_VERSION"
  mkdir -p "$wrapper"
  printf 'module ferry.local/etcdbuild\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" > "$wrapper/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$wrapper/tools.go"
  cd "$wrapper"
  [ -f go.sum ] || go mod tidy
  go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=ferry" \
    -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3
  mv "$BIN/etcd.tmp" "$BIN/etcd"
}

if [ ${#missing[@]} -gt 0 ]; then
  slow_step "building Kubernetes $K8S_VERSION from source (${missing[*]})" build_k8s
fi
if [ ! -x "$BIN/etcd" ]; then
  slow_step "building etcd $ETCD_VERSION from source" build_etcd
fi

echo "$BIN"
