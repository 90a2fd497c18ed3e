#!/usr/bin/env bash
# Checks that nothing of the e2e cluster is left on the machine: processes, mounts, network
# namespaces, interfaces, routes, iptables and ip6tables rules (the host's seal too), cgroups.
# Prints what it finds; exits 1 if any.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

found=0
check() { # check WHAT OUTPUT
  if [ -n "$2" ]; then
    echo "LEFTOVER $1:"; echo "$2" | sed 's/^/    /'; found=1
  else
    echo "clean    $1"
  fi
}

# The cluster's processes all name one of its own paths on their command line (config, data,
# certificates, containerd socket), or run in a pod cgroup. Matching on paths, not on binary
# names, leaves alone other users of the same binaries (e.g. the integration tier's apiserver).
ours=("$CTRD_DIR" "$E2E_DIR/etcd" "$PKI/" "$E2E_DIR/registry" "$E2E_DIR/registry-auth" "$E2E_DIR/git" "$E2E_DIR/kubelet"
  "$E2E_DIR/kube-proxy" "$E2E_DIR/coredns")
procs=$(
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = "$$" ] && continue
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    for o in "${ours[@]}"; do
      case "$cmd" in *"$o"*) echo "$pid $cmd"; break ;; esac
    done
  done
  while IFS= read -r f; do
    sed "s|\$| (in $(dirname "$f"))|" "$f"
  done < <(find /sys/fs/cgroup/*/kubepods -name cgroup.procs 2>/dev/null)
)
check processes "$procs"
check mounts "$(findmnt -rn -o TARGET,FSTYPE | grep -e "$E2E_DIR" -e "/run/netns/$NETNS" || true)"
check "network namespaces" "$(ip netns list | grep -w "$NETNS" || true)"
check interfaces "$(ip -br link | grep -e "$HOST_IF" -e cni0 || true)"
net_re="${NODE_NET%.*/*}\.|${POD_CIDR%.*.*/*}\.|${SERVICE_CIDR%.*.*/*}\."
check routes "$(ip route show table all | grep -E "$net_re" || true)"
# The host's seal (lib.sh) is the one set of rules the cluster puts in the host's own tables.
rules=$( { iptables-save 2>/dev/null; ip6tables-save 2>/dev/null; } |
  grep -E "KUBE-|CNI-|$SEAL_CHAIN|$HOST_IF|$net_re|$CNI_NET_NAME" || true)
check "iptables rules" "$rules"
# The names of our network's CNI result files (a glob, not ls | grep).
cni_results() {
  local f
  for f in /var/lib/cni/results/"$CNI_NET_NAME"-*; do
    if [ -e "$f" ] || [ -L "$f" ]; then echo "${f##*/}"; fi
  done
}
check "CNI result files" "$(cni_results)"
check cgroups "$(find /sys/fs/cgroup/*/ -maxdepth 1 -name 'kubepods*' 2>/dev/null || true)"
exit $found
