#!/usr/bin/env bash
# The scale tier (`make bench-scale`): figures, not a test, and not part of `make test`.
#
# A real control plane (etcd, kube-apiserver, and kube-controller-manager's Deployment and
# ReplicaSet controllers plus kube-scheduler, so Deployments become ReplicaSets and Pods that
# are scheduled) and fake nodes from kwok, which take each Pod through the status transitions
# a kubelet would (scheduled, running, ready) without running anything. kwok is the choice over
# the e2e cluster's real node because thousands of Pods of thousands of Applications do not
# fit on one machine as containers; everything Ferry reads (Deployment and Pod status) is still
# written by the real controllers and kwok.
#
# Ferry runs as in a cluster: the static (musl) release binary its image ships, `controller --leader-elect` as
# manifests/ferry.yaml runs it, with the token of the ServiceAccount that manifest creates, so
# its RBAC is the shipped one. It runs outside the (fake) nodes, as a process on this machine.
#
#   make bench-scale                          # 10,000 Applications
#   FERRY_SCALE_APPS=1000 make bench-scale    # fewer
#
# The driver (tests/scale.rs) applies the Applications, their Environments and Releases,
# changes some, restarts the controller, and prints `measured:` lines.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
export FERRY_APISERVER_DIR=${FERRY_APISERVER_DIR:-/tmp/ferry-scale}
export FERRY_ETCD_PORT=${FERRY_ETCD_PORT:-22379} FERRY_API_PORT=${FERRY_API_PORT:-26443}
DIR=$FERRY_APISERVER_DIR
CARGO=${CARGO:-cargo}

log() { echo "[$(date +%T)] bench-scale: $*" >&2; }

bin=$("$here/build-k8s.sh" all | tail -n1)
kwok_bin=$("$here/build-kwok.sh" | tail -n1)
# shellcheck source=e2e/lib/ferry.sh
source "$here/lib/ferry.sh"
log "building ferry (the static release binary the image ships) and the driver"
ferry=$(static_ferry)
(cd "$root" && $CARGO test --locked --release --test scale --no-run)

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$here/apiserver.sh" down || true
}
trap cleanup EXIT
"$here/apiserver.sh" up > /dev/null
export KUBECONFIG="$DIR/kubeconfig"
kc() { "$bin/kubectl" "$@"; }

# The controllers that turn Deployments into Pods, give each namespace the default
# ServiceAccount pods run as, and lift the not-ready taint off nodes kwok keeps Ready; allowed
# to keep up with thousands of objects (their default 20 requests per second would be the
# bottleneck).
"$bin/kube-controller-manager" --kubeconfig="$KUBECONFIG" --leader-elect=false --secure-port=0 \
  --controllers=deployment-controller,replicaset-controller,serviceaccount-controller,node-lifecycle-controller \
  --kube-api-qps=400 --kube-api-burst=800 \
  --concurrent-deployment-syncs=20 --concurrent-replicaset-syncs=20 \
  > "$DIR/kube-controller-manager.log" 2>&1 &
pids+=($!)
cat > "$DIR/scheduler.yaml" <<YAML
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection: {kubeconfig: "$KUBECONFIG", qps: 400, burst: 800}
leaderElection: {leaderElect: false}
YAML
"$bin/kube-scheduler" --config="$DIR/scheduler.yaml" --secure-port=0 > "$DIR/kube-scheduler.log" 2>&1 &
pids+=($!)
"$kwok_bin/kwok" --kubeconfig="$KUBECONFIG" --config="$kwok_bin/stages.yaml" --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --cidr=10.224.0.0/12 --node-ip=127.0.0.2 > "$DIR/kwok.log" 2>&1 &
kwok_pid=$!
pids+=("$kwok_pid")

# Fake nodes, each with room for thousands of pods.
nodes=${FERRY_SCALE_NODES:-10}
for i in $(seq 0 $((nodes - 1))); do
  cat <<YAML
---
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "5000"}
  capacity: {cpu: "1000", memory: 4Ti, pods: "5000"}
YAML
done | kc apply -f - > /dev/null

# Ferry's CRDs, RBAC and policies as shipped; its Deployment is not run on fake nodes (it
# runs as a process here), so it is scaled to nothing.
kc apply --server-side -f "$root/manifests/crds.yaml" > /dev/null
kc wait --for condition=established --timeout=60s crd --all > /dev/null
kc apply --server-side -f "$root/manifests/ferry.yaml" > /dev/null
kc -n ferry-system scale deployment ferry --replicas=0 > /dev/null
# The two shards the driver runs at the end lead Leases of their own, which the manifest's Role
# does not name (the chart's does, with shards=2): add them, as the README says.
kc -n ferry-system patch role ferry-leader-election --type=json -p='[{"op": "add",
  "path": "/rules/0/resourceNames/-", "value": "ferry-controller-0-of-2"}, {"op": "add",
  "path": "/rules/0/resourceNames/-", "value": "ferry-controller-1-of-2"}]' > /dev/null
token=$(kc -n ferry-system create token ferry --duration=3h)
server=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kc config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
cat > "$DIR/ferry.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters: [{name: scale, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: ferry, user: {token: "$token"}}]
contexts: [{name: scale, context: {cluster: scale, user: ferry}}]
current-context: scale
KCFG
deadline=$((SECONDS + 120))
until kc get nodes -o jsonpath='{.items[*].status.conditions[?(@.type=="Ready")].status}' | grep -q True; do
  if [ $SECONDS -gt $deadline ] || ! kill -0 "$kwok_pid" 2>/dev/null; then
    log "kwok's nodes did not become Ready; the end of its log:"
    tail -n 20 "$DIR/kwok.log" >&2
    exit 1
  fi
  sleep 1
done
log "control plane, $nodes kwok nodes and Ferry's install are up; logs in $DIR"

FERRY_SCALE_BINARY="$ferry" FERRY_SCALE_KUBECONFIG="$DIR/ferry.kubeconfig" \
FERRY_SCALE_LOG="$DIR/ferry.log" \
  $CARGO test --locked --release --test scale -- --ignored --nocapture --test-threads=1
