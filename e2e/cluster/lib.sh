# shellcheck shell=bash
# Shared settings and helpers for the single-node e2e cluster (sourced, not run).
#
# The whole cluster runs inside one network namespace, $NETNS, that the harness creates. Its only
# link is a veth pair to the host ($HOST_IF <-> $NODE_IF), and it has no default route, so nothing
# a component or a pod sends can leave the machine. On top of that the namespace is sealed by
# iptables and ip6tables rules on both sides of the veth (seal_node, seal_host below), so that
# even a route added from inside cannot lead anywhere. Deleting the namespace removes every
# interface, route and iptables rule made inside it; the host's seal is removed by cluster-down
# (unseal_host). Processes join only the network namespace
# (nsenter --net), not a private mount namespace as `ip netns exec` would give them, because
# kubelet and containerd must see each other's mounts.

# Most settings below are read only by the scripts that source this file, which shellcheck
# cannot see when it checks this file alone.
# shellcheck disable=SC2034
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
# A second registry that wants a user and password (htpasswd), for tests of refused pushes. The
# password is a fixed test value: the registry holds nothing but what the tests push, and is
# reachable only from the host and the cluster.
AUTH_REGISTRY="$NODE_IP:5001"
AUTH_REGISTRY_USER=ferry
AUTH_REGISTRY_PASSWORD=ferry-e2e-pass
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

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/../lib/progress.sh"

export PATH="$TOOLS_BIN:$K8S_BIN:/usr/local/sbin:/usr/sbin:/sbin:$PATH"
# Every address the harness uses is on its own network; never send it to an HTTP proxy.
export NO_PROXY="${NO_PROXY:+$NO_PROXY,}$NODE_NET,$POD_CIDR,$SERVICE_CIDR,$NODE_IP,127.0.0.1,localhost"
export no_proxy="$NO_PROXY"

# The seal's chain, on the host (filter table) and in the node namespace (mangle table), for
# IPv4 and IPv6. One name, so cluster-down removes exactly these rules and check-clean finds them.
SEAL_CHAIN=FERRY-E2E-SEAL

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
  local name=$1
  shift
  mkdir -p "$LOGS" "$RUN"
  (
    # Only stdin, stdout and stderr: a daemon must not keep its caller's descriptors open, such
    # as the lock of `flock /tmp/ferry-e2e-cluster.lock make ...` (held until cluster-down, so
    # the next flock would wait forever) or a pipe reading the caller's output
    # (`make demo | less` would never see its end).
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      [ "$fd" -le 2 ] || eval "exec $fd>&-" 2>/dev/null || true
    done
    exec setsid nsenter --net="/run/netns/$NETNS" -- "$@" </dev/null >"$LOGS/$name.log" 2>&1
  ) &
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

# --- the seal ---------------------------------------------------------------------------------
#
# Two layers, so that one failing or being undone does not open the cluster:
#
# In the node namespace (seal_node), the mangle table's POSTROUTING chain drops every packet
# whose destination is not the cluster's: not loopback, not a pod, not a Service, and no new
# connection to the host's end of the veth. POSTROUTING because every packet that leaves the
# namespace's routing passes it, forwarded (from pods) or locally made (components, hostNetwork),
# after kube-proxy's DNAT has set its final destination; and mangle because no ACCEPT of
# kube-proxy's or CNI's filter and nat rules can skip it (kube-proxy's KUBE-FORWARD ACCEPTs
# marked packets before any rule of ours in filter FORWARD could see them). IPv6 is not used by
# the cluster at all: everything but loopback is dropped.
#
# On the host (seal_host), the filter table's INPUT and FORWARD drop every new connection that
# arrives from the veth, to the host's own addresses (also the veth's 10.211.0.1) or to be routed
# on, and FORWARD drops new connections routed into the veth from elsewhere. Replies to what the
# host opened (kubectl, curl, git push into the cluster) pass as ESTABLISHED. This layer holds
# even if something in the node namespace with CAP_NET_ADMIN removes the inner one and adds a
# default route: it lives in a network namespace the cluster cannot touch.

# ipt4/ipt6 ARGS... on the host, node_ipt4/node_ipt6 ARGS... in the node namespace. All wait for
# the xtables lock, which kube-proxy in the namespace shares (it is a file, not per namespace).
ipt4() { iptables -w 5 "$@"; }
ipt6() { ip6tables -w 5 "$@"; }
node_ipt4() { in_ns iptables -w 5 "$@"; }
node_ipt6() { in_ns ip6tables -w 5 "$@"; }

# The rules, one string of iptables words each; DROP last.
NODE_SEAL4=("-o lo -j RETURN" "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
  "-d $POD_CIDR -j RETURN" "-d $SERVICE_CIDR -j RETURN" "-j DROP")
NODE_SEAL6=("-o lo -j RETURN" "-j DROP")
HOST_SEAL=("-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN" "-j DROP")
HOST_JUMPS=("INPUT -i $HOST_IF" "FORWARD -i $HOST_IF" "FORWARD -o $HOST_IF")

# seal_chain IPT TABLE RULE... — creates $SEAL_CHAIN in TABLE with exactly these rules. Only on a
# fresh namespace or host: refilling a live chain would leave it open for a moment.
seal_chain() {
  local ipt=$1 table=$2 rule
  shift 2
  "$ipt" -t "$table" -N "$SEAL_CHAIN" 2>/dev/null || "$ipt" -t "$table" -F "$SEAL_CHAIN"
  for rule in "$@"; do
    # shellcheck disable=SC2086 # each rule is a list of words
    "$ipt" -t "$table" -A "$SEAL_CHAIN" $rule
  done
}

# chain_is IPT TABLE RULE... — $SEAL_CHAIN in TABLE holds these rules and no others.
chain_is() {
  local ipt=$1 table=$2 rule n
  shift 2
  n=$("$ipt" -t "$table" -S "$SEAL_CHAIN" 2>/dev/null | grep -c '^-A') || return 1
  [ "$n" -eq $# ] || return 1
  for rule in "$@"; do
    # shellcheck disable=SC2086
    "$ipt" -t "$table" -C "$SEAL_CHAIN" $rule 2>/dev/null || return 1
  done
}

# jump_to_seal IPT TABLE CHAIN MATCH... — CHAIN's first rule becomes a jump to $SEAL_CHAIN.
jump_to_seal() {
  local ipt=$1 table=$2 chain=$3
  shift 3
  "$ipt" -t "$table" -I "$chain" 1 "$@" -j "$SEAL_CHAIN"
}

# Run on a fresh namespace, before any component starts.
seal_node() {
  seal_chain node_ipt4 mangle "${NODE_SEAL4[@]}"
  jump_to_seal node_ipt4 mangle POSTROUTING
  seal_chain node_ipt6 mangle "${NODE_SEAL6[@]}"
  jump_to_seal node_ipt6 mangle POSTROUTING
}

# Run with the veth just made, before anything in the namespace starts.
seal_host() {
  local ipt jump
  unseal_host   # a jump left behind by a crashed run must not stay twice
  for ipt in ipt4 ipt6; do
    seal_chain "$ipt" filter "${HOST_SEAL[@]}"
    for jump in "${HOST_JUMPS[@]}"; do
      # shellcheck disable=SC2086
      jump_to_seal "$ipt" filter $jump
    done
  done
}

# Removes exactly what seal_host added: every copy of each jump, then the chain.
unseal_host() {
  local ipt bin jump
  for ipt in ipt4 ipt6; do
    bin=iptables; [ "$ipt" = ipt4 ] || bin=ip6tables
    command -v "$bin" >/dev/null 2>&1 || continue   # never installed: nothing to remove
    for jump in "${HOST_JUMPS[@]}"; do
      # shellcheck disable=SC2086
      while "$ipt" -t filter -C $jump -j "$SEAL_CHAIN" 2>/dev/null; do
        "$ipt" -t filter -D $jump -j "$SEAL_CHAIN"
      done
    done
    if "$ipt" -t filter -S "$SEAL_CHAIN" >/dev/null 2>&1; then
      "$ipt" -t filter -F "$SEAL_CHAIN"
      "$ipt" -t filter -X "$SEAL_CHAIN"
    fi
  done
}

# host_sealed / node_sealed — every chain holds its rules and every jump is in place (part of
# cluster-up's health check: a cluster whose seal is gone is started again).
host_sealed() {
  local ipt jump
  for ipt in ipt4 ipt6; do
    chain_is "$ipt" filter "${HOST_SEAL[@]}" || return 1
    for jump in "${HOST_JUMPS[@]}"; do
      # shellcheck disable=SC2086
      "$ipt" -t filter -C $jump -j "$SEAL_CHAIN" 2>/dev/null || return 1
    done
  done
}
node_sealed() {
  chain_is node_ipt4 mangle "${NODE_SEAL4[@]}" &&
    node_ipt4 -t mangle -C POSTROUTING -j "$SEAL_CHAIN" 2>/dev/null &&
    chain_is node_ipt6 mangle "${NODE_SEAL6[@]}" &&
    node_ipt6 -t mangle -C POSTROUTING -j "$SEAL_CHAIN" 2>/dev/null
}

# seal_drops 4|6 host|node — how many packets the seal's DROP rule has dropped there so far.
seal_drops() {
  local ipt table=filter
  if [ "$2" = node ]; then ipt=node_ipt$1; table=mangle; else ipt=ipt$1; fi
  "$ipt" -t "$table" -L "$SEAL_CHAIN" -n -v -x | awk '$3 == "DROP" {print $1}'
}
