# Shared settings and helpers for the single-node e2e cluster (sourced, not run).
#
# The whole cluster runs inside one network namespace, $NETNS, that the harness creates. Its only
# link is a veth pair to the host ($HOST_IF <-> $NODE_IF), and it has no default route, so nothing
# a component or a pod sends can leave the machine. Deleting the namespace removes every
# interface, route and iptables rule the cluster made. Processes join only the network namespace
# (nsenter --net), not a private mount namespace as `ip netns exec` would give them, because
# kubelet and containerd must see each other's mounts.

FERRY_CACHE=${FERRY_CACHE:-$HOME/.cache/ferry}
E2E_DIR=${FERRY_E2E_DIR:-/var/lib/ferry-e2e}
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.4}
COREDNS_VERSION=${COREDNS_VERSION:-v1.12.4}
K8S_BIN="$FERRY_CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
TOOLS_BIN="$FERRY_CACHE/bin"          # stable place for kubectl and the harness's own tools

NETNS=ferry-e2e
HOST_IF=ferry-host                    # host end of the veth pair
NODE_IF=ferry-node                    # namespace end
HOST_IP=10.211.0.1
NODE_IP=10.211.0.2                    # node InternalIP, apiserver, registry, git server
NODE_NET=10.211.0.0/24
NODE_NAME=ferry-node
POD_CIDR=10.244.0.0/16
POD_SUBNET=10.244.0.0/24              # the node's range (host-local IPAM, no node IPAM controller)
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
API_PORT=6443
REGISTRY="$NODE_IP:5000"
GIT_URL="http://$NODE_IP:8080"

PKI="$E2E_DIR/pki"
LOGS="$E2E_DIR/logs"
RUN="$E2E_DIR/run"                    # pid files
KUBECONFIG_ADMIN="$E2E_DIR/kubeconfig"
CTRD_DIR="$E2E_DIR/containerd"
CTRD_SOCK="$CTRD_DIR/containerd.sock"
RUNC_ROOT="$CTRD_DIR/runc"
CNI_NET_NAME=ferry-pods

# kubelet writes these host-wide kernel settings at start (setupKernelTunables); cluster-up saves
# them and cluster-down puts them back.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

export PATH="$TOOLS_BIN:$K8S_BIN:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
# Every address the harness uses is on its own network; never send it to an HTTP proxy.
export NO_PROXY="${NO_PROXY:+$NO_PROXY,}$NODE_NET,$POD_CIDR,$SERVICE_CIDR,$NODE_IP,127.0.0.1,localhost"
export no_proxy="$NO_PROXY"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run a command in the cluster's network namespace (and only that namespace).
in_ns() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# wait_until SECONDS DESCRIPTION CMD... — poll CMD every half second until it succeeds.
wait_until() {
  local timeout=$1 what=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.5
  done
}

# start_daemon NAME CMD... — start a long-running component inside the namespace, detached from
# the caller's session, output to $LOGS/NAME.log, pid in $RUN/NAME.pid. setsid and nsenter both
# exec, so $! is the component's own pid.
start_daemon() {
  local name=$1; shift
  mkdir -p "$LOGS" "$RUN"
  setsid nsenter --net="/run/netns/$NETNS" -- "$@" </dev/null >"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
  log "started $name (pid $!), log $LOGS/$name.log"
}

# running PID — the process exists and is not a zombie. Our daemons are reparented to pid 1,
# which may reap them a while after they exit; kill -0 alone would count them as alive.
running() { [ -d "/proc/$1" ] && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }
pid_alive() { [ -f "$RUN/$1.pid" ] && running "$(cat "$RUN/$1.pid")"; }

# Ask the apiserver as admin.
kc() { kubectl --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# step NAME FUNCTION — runs FUNCTION in a subshell with errexit in force (it would be ignored
# under `if`), so any failing command fails the step. On failure it calls the caller's
# `diagnose` function, leaves the cluster up for inspection and exits 1.
step() {
  local name=$1 rc
  shift
  echo "---- $name"
  set +e
  (set -e; "$@")
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then
    echo "PASS $name"
  else
    echo "FAIL $name"
    diagnose
    exit 1
  fi
}
