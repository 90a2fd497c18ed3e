#!/usr/bin/env bash
# Tears the e2e cluster down completely and idempotently: every process, container, mount,
# cgroup, network namespace (with its interfaces, routes and iptables rules), the host's seal
# rules and kernel setting the cluster made. State goes too; the last run's component logs stay in $E2E_DIR/logs.
# Ends by running check-clean.sh, so a leftover makes it fail.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "cluster-down needs root"

# stop NAME — SIGTERM the component in $RUN/NAME.pid, SIGKILL it after 10 s.
stop() {
  local name=$1 pid
  [ -f "$RUN/$name.pid" ] || return 0
  pid=$(cat "$RUN/$name.pid")
  if running "$pid" && kill -TERM "$pid" 2>/dev/null; then
    local deadline=$((SECONDS + 10))
    while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if running "$pid"; then kill_pids "$pid"; log "killed $name (pid $pid)"; else log "stopped $name"; fi
  fi
  rm -f "$RUN/$name.pid"
}

# kill_pids PID... — SIGKILL each and wait until it is gone.
kill_pids() {
  local pid n
  for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
  for pid in "$@"; do
    n=0
    while running "$pid" && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  done
}

# Pids of processes whose command line mentions STRING (our unique state paths), never ours.
pids_mentioning() {
  local p
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" = "$$" ] && continue
    tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$1" && echo "${p#/proc/}"
  done
  return 0
}

host_if_gone() { ! ip link show "$HOST_IF" >/dev/null 2>&1; }

kubepods_cgroups() { find /sys/fs/cgroup/*/kubepods -depth -type d 2>/dev/null || true; }

# In a function, so the whole file is read before anything runs (safe to edit during a run).
main() {
  # 1. The node agents first, so nothing restarts a container while it is being removed.
  stop kubelet
  stop kube-proxy

  # 2. Containers: runc works from its own state, even with containerd gone.
  if [ -d "$RUNC_ROOT" ]; then
    for root in "$RUNC_ROOT"/*/; do
      [ -d "$root" ] || continue
      for id in $(runc --root "$root" list -q 2>/dev/null); do
        runc --root "$root" delete --force "$id" >/dev/null 2>&1 || true
      done
    done
  fi
  # Whatever still runs in a pod cgroup (belt and braces).
  stray=$(for d in $(kubepods_cgroups); do cat "$d/cgroup.procs" 2>/dev/null; done | sort -u)
  [ -z "$stray" ] || { log "killing pod processes $stray"; kill_pids $stray; }

  # 3. containerd and its shims (each shim names our containerd socket on its command line).
  stop containerd
  shims=$(pids_mentioning "$CTRD_SOCK")
  [ -z "$shims" ] || { log "killing shims $shims"; kill_pids $shims; }

  # 4. Control plane and the harness's servers.
  for c in coredns kube-scheduler kube-controller-manager kube-apiserver etcd gitserver registry-auth registry; do
    stop "$c"
  done

  # 5. Anything else still in the cluster's network namespace (every component started there).
  if [ -e "/run/netns/$NETNS" ]; then
    ns=$(stat -L -c %i "/run/netns/$NETNS")
    left=()
    for p in /proc/[0-9]*; do
      [ "$(stat -L -c %i "$p/ns/net" 2>/dev/null)" = "$ns" ] && left+=("${p#/proc/}")
    done
    [ ${#left[@]} -eq 0 ] || { log "killing processes left in $NETNS: ${left[*]}"; kill_pids "${left[@]}"; }
  fi

  # 6. Mounts under the state dir (container rootfs overlays, sandbox shm, pod netns, kubelet
  #    volumes), deepest first.
  for m in $(findmnt -rn -o TARGET | grep -F "$E2E_DIR/" | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done

  # 7. Pod cgroups in every hierarchy, children before parents.
  for d in $(kubepods_cgroups); do rmdir "$d" 2>/dev/null || log "cannot remove cgroup $d"; done

  # 8. The network namespace takes the veth pair, the host routes through it, the pod bridge and
  #    every iptables rule kube-proxy and CNI made with it.
  if ip netns list | grep -qw "$NETNS"; then ip netns delete "$NETNS"; fi
  # The namespace's end takes the host's end with it, but the kernel does that in the background:
  # the host's end may vanish between the two commands below.
  if ip link show "$HOST_IF" >/dev/null 2>&1; then ip link delete "$HOST_IF" 2>/dev/null || true; fi
  wait_until 10 "interface $HOST_IF to go away" host_if_gone
  # `ip netns add` turns /run/netns into a mount point of its own; undo that once no namespace
  # lives there any more (another user's namespaces keep it).
  if mountpoint -q /run/netns && [ -z "$(ls -A /run/netns)" ]; then umount /run/netns; fi
  # The seal's rules on the host side (lib.sh): last, once nothing of the cluster runs any more.
  unseal_host

  # 9. Kernel settings kubelet changed.
  if [ -f "$E2E_DIR/sysctl.orig" ]; then
    while IFS= read -r kv; do sysctl -qw "$kv" || log "cannot restore $kv"; done <"$E2E_DIR/sysctl.orig"
    rm "$E2E_DIR/sysctl.orig"
  fi

  # libcni keeps per-attachment results in /var/lib/cni/results whatever containerd is told:
  # those of our network, and the loopback ones of our sandboxes (by sandbox id).
  rm -f /var/lib/cni/results/"$CNI_NET_NAME"-*
  for sandbox in "$CTRD_DIR/root/io.containerd.grpc.v1.cri/sandboxes"/*; do
    [ -e "$sandbox" ] || [ -L "$sandbox" ] || continue
    id=${sandbox##*/}
    rm -f /var/lib/cni/results/*-"$id"-*
  done
  # Directories libcni and the shims create at fixed places; removed only when empty, so another
  # containerd's are left alone.
  rmdir /var/lib/cni/results /var/lib/cni /run/containerd/s /run/containerd 2>/dev/null || true

  # 10. State, keeping the logs of this run for diagnosis (the next cluster-up moves them aside).
  if [ -d "$E2E_DIR" ]; then
    find "$E2E_DIR" -mindepth 1 -maxdepth 1 ! -name logs ! -name logs.prev -exec rm -rf {} +
  fi

  "$here/check-clean.sh"
}

main "$@"
