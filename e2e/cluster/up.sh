#!/usr/bin/env bash
# Brings up the single-node e2e cluster (see docs/cluster.md). Idempotent: a healthy cluster is
# left alone, a broken or half-started one is torn down and started again. The last line printed
# is `export KUBECONFIG=...`.
#
# Each slow step prints one line ("building CoreDNS v1.12.4 ... done in 2m17s"); what the steps
# print goes to $FERRY_LOG (default $FERRY_CACHE/logs/cluster-up.log), whose last lines are shown
# if a step fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

[ "$(id -u)" = 0 ] || die "cluster-up needs root (network namespace, mounts, cgroups)"

# --- packages --------------------------------------------------------------------------------

packages=(containerd runc containernetworking-plugins iptables conntrack docker-registry skopeo
  busybox-static openssl git jq curl gcc libc6-dev binutils iproute2 util-linux apache2-utils)
ensure_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  slow_step "installing packages: ${missing[*]}" install_packages "${missing[@]}"
}
install_packages() {
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- already up? -----------------------------------------------------------------------------

components=(registry registry-auth gitserver etcd kube-apiserver kube-controller-manager kube-scheduler
  coredns containerd kubelet kube-proxy)
cluster_healthy() {
  local c
  for c in "${components[@]}"; do pid_alive "$c" || return 1; done
  host_sealed || { log "the host's seal ($SEAL_CHAIN) is not in place"; return 1; }
  node_sealed || { log "the node namespace's seal ($SEAL_CHAIN) is not in place"; return 1; }
  kc get --raw /readyz >/dev/null 2>&1 || return 1
  [ "$(kc get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' \
    2>/dev/null)" = True ]
}

print_result() {
  cat >"$E2E_DIR/env" <<EOF
# Source this file to use the ferry e2e cluster.
export KUBECONFIG=$KUBECONFIG_ADMIN
export PATH=$TOOLS_BIN:\$PATH
export FERRY_E2E_REGISTRY=$REGISTRY
export FERRY_E2E_AUTH_REGISTRY=$AUTH_REGISTRY
export FERRY_E2E_AUTH_REGISTRY_USER=$AUTH_REGISTRY_USER
export FERRY_E2E_AUTH_REGISTRY_PASSWORD=$AUTH_REGISTRY_PASSWORD
export FERRY_E2E_GIT_URL=$GIT_URL
export FERRY_E2E_NODE_IP=$NODE_IP
EOF
  log "cluster is up: node $NODE_NAME ($NODE_IP), registry $REGISTRY (with auth: $AUTH_REGISTRY), git $GIT_URL"
  log "kubectl: $TOOLS_BIN/kubectl; all settings: source $E2E_DIR/env; logs: $LOGS"
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
}

# --- host network ----------------------------------------------------------------------------

setup_network() {
  ip netns add "$NETNS"
  ip link add "$HOST_IF" type veth peer name "$NODE_IF" netns "$NETNS"
  # Sealed before either end is up and before anything runs inside (lib.sh, "the seal").
  seal_host
  seal_node
  ip addr add "$HOST_IP/24" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  in_ns ip link set lo up
  in_ns ip addr add "$NODE_IP/24" dev "$NODE_IF"
  in_ns ip link set "$NODE_IF" up
  # The host reaches pods and Services through the node, as a router would. These routes go away
  # with the veth when the namespace is deleted.
  ip route add "$POD_CIDR" via "$NODE_IP" dev "$HOST_IF"
  ip route add "$SERVICE_CIDR" via "$NODE_IP" dev "$HOST_IF"
  # Inside there is no default route at all, so nothing can leave. The Service range is routed
  # into a dead end, a veth pair with both ends inside: a ClusterIP that kube-proxy has not
  # programmed yet goes nowhere (the connection fails after ARP gives up). Some route is needed:
  # processes of the node's own namespace (the git server's webhooks, hostNetwork pods) get
  # kube-proxy's DNAT in OUTPUT, which comes after the route lookup, and without a route the
  # connect() fails before DNAT can happen.
  in_ns ip link add svc-sink type veth peer name svc-sink-peer
  in_ns ip link set svc-sink-peer up
  in_ns ip link set svc-sink up
  in_ns ip route add "$SERVICE_CIDR" dev svc-sink
  # Both are per network namespace, so the host's own settings stay untouched. br_netfilter is
  # built into this kernel (no module to load); it makes bridged pod-to-pod traffic pass
  # iptables, which Service DNAT between two pods on the same bridge needs.
  in_ns sysctl -qw net.ipv4.ip_forward=1
  in_ns sysctl -qw net.bridge.bridge-nf-call-iptables=1
  # The cluster speaks no IPv6: a router advertisement must not give the node a default route.
  in_ns sysctl -qw net.ipv6.conf.default.accept_ra=0 "net.ipv6.conf.$NODE_IF.accept_ra=0"
}

# --- registry, git server, images ------------------------------------------------------------

start_registry() {
  mkdir -p "$E2E_DIR/registry/data"
  cat >"$E2E_DIR/registry/config.yml" <<EOF
version: 0.1
log: {level: info, fields: {service: registry}}
storage:
  filesystem: {rootdirectory: $E2E_DIR/registry/data}
  delete: {enabled: true}
http:
  addr: $REGISTRY
  headers: {X-Content-Type-Options: [nosniff]}
EOF
  start_daemon registry docker-registry serve "$E2E_DIR/registry/config.yml"
}

# The same registry program with its own storage, refusing every request without the test
# user's password (htpasswd, bcrypt: the only hash docker-registry accepts). Plain HTTP like the
# other: the password crosses only the veth and the pod bridge.
start_auth_registry() {
  local dir="$E2E_DIR/registry-auth"
  mkdir -p "$dir/data"
  # -C 5: a low bcrypt cost, so that checking each request's password stays cheap.
  htpasswd -nbB -C 5 "$AUTH_REGISTRY_USER" "$AUTH_REGISTRY_PASSWORD" >"$dir/htpasswd"
  cat >"$dir/config.yml" <<EOF
version: 0.1
log: {level: info, fields: {service: registry-auth}}
storage:
  filesystem: {rootdirectory: $dir/data}
  delete: {enabled: true}
auth:
  htpasswd: {realm: ferry-e2e, path: $dir/htpasswd}
http:
  addr: $AUTH_REGISTRY
  headers: {X-Content-Type-Options: [nosniff]}
EOF
  start_daemon registry-auth docker-registry serve "$dir/config.yml"
}

# auth_registry_refuses_anonymous — the registry with auth is up and wants a password.
auth_registry_refuses_anonymous() {
  [ "$(curl -sS -o /dev/null -w '%{http_code}' "http://$AUTH_REGISTRY/v2/")" = 401 ]
}

# The git server's binary, keyed by a hash of its source.
gitserver_bin() {
  echo "$FERRY_CACHE/tools/gitserver-$(cat "$here/gitserver/go.mod" "$here/gitserver/main.go" |
    sha256sum | cut -c1-16)"
}
build_gitserver() {
  local bin; bin=$(gitserver_bin)
  mkdir -p "$FERRY_CACHE/tools"
  cd "$here/gitserver"
  export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
  go vet .
  go build -trimpath -o "$bin.tmp" .
  mv "$bin.tmp" "$bin"
}

# CoreDNS answers cluster.local from the API (Services, pods) on the node address, where
# kubelet points every pod's resolver. It has no upstream: any other name is NXDOMAIN, so no
# lookup ever leaves. Its module has no replace directives, so `go install` works.
coredns_bin() { echo "$FERRY_CACHE/tools/coredns-$COREDNS_VERSION"; }
build_coredns() {
  mkdir -p "$FERRY_CACHE/tools/gobin-coredns"
  GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod \
    GOBIN="$FERRY_CACHE/tools/gobin-coredns" \
    go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  mv "$FERRY_CACHE/tools/gobin-coredns/coredns" "$(coredns_bin)"
  rmdir "$FERRY_CACHE/tools/gobin-coredns"
}

start_coredns() {
  local bin; bin=$(coredns_bin)
  kc apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "ferry-e2e:coredns"}
rules:
- {apiGroups: [""], resources: [services, endpoints, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "ferry-e2e:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "ferry-e2e:coredns"}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: "ferry-e2e:coredns"}]
EOF
  mkdir -p "$E2E_DIR/coredns"
  cat >"$E2E_DIR/coredns/Corefile" <<EOF
cluster.local:53 in-addr.arpa:53 {
    bind $NODE_IP
    errors
    kubernetes cluster.local in-addr.arpa {
        kubeconfig $PKI/coredns.kubeconfig ferry-e2e
        pods insecure
        fallthrough in-addr.arpa
    }
    cache 5
}
.:53 {
    bind $NODE_IP
    errors
    # No upstream on purpose: nothing outside the cluster is resolved.
    template ANY ANY {
        rcode NXDOMAIN
    }
}
EOF
  start_daemon coredns "$bin" -conf "$E2E_DIR/coredns/Corefile"
  wait_until 30 "CoreDNS to answer" \
    busybox nslookup "kubernetes.default.svc.cluster.local" "$NODE_IP"
}

# --- PKI -------------------------------------------------------------------------------------

# cert NAME SUBJECT EXTENDED-KEY-USAGE [SUBJECT-ALT-NAMES] — a key pair signed by the cluster CA.
cert() {
  local name=$1 subject=$2 eku=$3 san=${4:-}
  {
    echo "basicConstraints = critical, CA:FALSE"
    echo "keyUsage = critical, digitalSignature, keyEncipherment"
    echo "extendedKeyUsage = $eku"
    [ -z "$san" ] || echo "subjectAltName = $san"
  } >"$PKI/$name.ext"
  openssl req -new -newkey rsa:2048 -nodes -subj "$subject" \
    -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 3650 -extfile "$PKI/$name.ext" \
    -out "$PKI/$name.crt" 2>/dev/null
  rm "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig FILE CERT-NAME SERVER
kubeconfig() {
  local file=$1 name=$2 server=$3
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ferry-e2e
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$name.crt")
    client-key-data: $(base64 -w0 "$PKI/$name.key")
contexts:
- name: ferry-e2e
  context: {cluster: ferry-e2e, user: $name}
current-context: ferry-e2e
EOF
  chmod 0600 "$file"
}

make_pki() {
  mkdir -p "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -subj "/CN=ferry-e2e-ca" -days 3650 \
    -keyout "$PKI/ca.key" -out "$PKI/ca.crt" 2>/dev/null
  cert apiserver "/CN=kube-apiserver" serverAuth \
    "IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  # The apiserver's client identity towards kubelets (logs, exec, port-forward).
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
  cert admin "/O=system:masters/CN=ferry-e2e-admin" clientAuth
  # The Node authorizer only lets a kubelet act for the node named in its CN.
  cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" serverAuth,clientAuth \
    "DNS:$NODE_NAME,IP:$NODE_IP"
  cert kube-controller-manager "/CN=system:kube-controller-manager" clientAuth
  cert kube-scheduler "/CN=system:kube-scheduler" clientAuth
  cert kube-proxy "/CN=system:kube-proxy" clientAuth
  cert coredns "/CN=ferry-e2e:coredns" clientAuth
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null

  local local_api="https://127.0.0.1:$API_PORT" node_api="https://$NODE_IP:$API_PORT"
  kubeconfig "$KUBECONFIG_ADMIN" admin "$node_api"
  kubeconfig "$PKI/kube-controller-manager.kubeconfig" kube-controller-manager "$local_api"
  kubeconfig "$PKI/kube-scheduler.kubeconfig" kube-scheduler "$local_api"
  kubeconfig "$PKI/kubelet.kubeconfig" kubelet "$node_api"
  kubeconfig "$PKI/kube-proxy.kubeconfig" kube-proxy "$node_api"
  kubeconfig "$PKI/coredns.kubeconfig" coredns "$local_api"
}

# --- control plane ---------------------------------------------------------------------------

# Pod Security admission's cluster-wide default: every namespace enforces the baseline Pod
# Security Standard unless its labels say otherwise, so no pod can share the node's network, PID
# or IPC namespace, use hostPath volumes or host ports, or add capabilities such as NET_ADMIN.
# Nothing is exempt: no pod of this cluster needs any of that (kube-proxy, CoreDNS and the
# registry run as processes on the node, not as pods). Privileged containers are refused even in
# a namespace labelled privileged: the apiserver runs with --allow-privileged=false.
write_admission_config() {
  cat >"$E2E_DIR/admission.yaml" <<EOF
apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: PodSecurity
  configuration:
    apiVersion: pod-security.admission.config.k8s.io/v1
    kind: PodSecurityConfiguration
    defaults:
      enforce: baseline
      enforce-version: latest
      warn: baseline
      warn-version: latest
      audit: baseline
      audit-version: latest
    exemptions: {usernames: [], runtimeClasses: [], namespaces: []}
EOF
}

start_control_plane() {
  write_admission_config
  start_daemon etcd etcd --name ferry-e2e --data-dir "$E2E_DIR/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster ferry-e2e=http://127.0.0.1:2380 --initial-cluster-state new \
    --listen-metrics-urls "" --unsafe-no-fsync --log-level warn
  wait_until 60 "etcd health" in_ns curl -fsS http://127.0.0.1:2379/health

  start_daemon kube-apiserver kube-apiserver \
    --advertise-address="$NODE_IP" --bind-address=0.0.0.0 --secure-port="$API_PORT" \
    --etcd-servers=http://127.0.0.1:2379 \
    --allow-privileged=false \
    --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction,PodSecurity \
    --admission-control-config-file="$E2E_DIR/admission.yaml" \
    --client-ca-file="$PKI/ca.crt" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
    --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority="$PKI/ca.crt" \
    `# Without this the apiserver resolves the node's name through the machine's DNS.` \
    --kubelet-preferred-address-types=InternalIP \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --profiling=false --v=1
  wait_until 120 "kube-apiserver /readyz" \
    curl -fsS --cacert "$PKI/ca.crt" "https://$NODE_IP:$API_PORT/readyz"

  start_daemon kube-controller-manager kube-controller-manager \
    --kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig="$PKI/kube-controller-manager.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false \
    --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --use-service-account-credentials=true \
    --service-cluster-ip-range="$SERVICE_CIDR" --cluster-cidr="$POD_CIDR" \
    --allocate-node-cidrs=false --profiling=false --v=1
  start_daemon kube-scheduler kube-scheduler \
    --kubeconfig="$PKI/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig="$PKI/kube-scheduler.kubeconfig" \
    --bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1
}

# --- node ------------------------------------------------------------------------------------

start_containerd() {
  mkdir -p "$CTRD_DIR/certs.d/$REGISTRY" "$E2E_DIR/cni/net.d"
  # Own root, state, socket and runc root: a containerd the host may run is not touched.
  cat >"$CTRD_DIR/config.toml" <<EOF
version = 2
root = "$CTRD_DIR/root"
state = "$CTRD_DIR/state"
[grpc]
  address = "$CTRD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD_DIR/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$REGISTRY/pause:3.10"
  # This VM lacks CAP_SYS_RESOURCE: runc cannot give the sandbox the negative oom_score_adj CRI
  # asks for, and every pod fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  # Pod network namespaces are bind-mounted under our state dir, not /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # cgroup v1 without systemd: must match the kubelet's cgroupDriver: cgroupfs.
        SystemdCgroup = false
        Root = "$RUNC_ROOT"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$E2E_DIR/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$CTRD_DIR/certs.d"
EOF
  # The registries speak plain HTTP; pods push to them and the node pulls by the same reference
  # (from the one with auth only with an imagePullSecret).
  local r
  for r in "$REGISTRY" "$AUTH_REGISTRY"; do
    mkdir -p "$CTRD_DIR/certs.d/$r"
    cat >"$CTRD_DIR/certs.d/$r/hosts.toml" <<EOF
server = "http://$r"
[host."http://$r"]
  capabilities = ["pull", "resolve", "push"]
EOF
  done
  cat >"$E2E_DIR/cni/net.d/10-$CNI_NET_NAME.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET_NAME",
  "plugins": [
    {
      "type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": {
        "type": "host-local", "dataDir": "$E2E_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  start_daemon containerd containerd --config "$CTRD_DIR/config.toml"
  wait_until 30 "containerd socket" test -S "$CTRD_SOCK"
}

save_sysctls() {
  # Kept until cluster-down restores them; a second cluster-up must not save kubelet's values.
  [ -f "$E2E_DIR/sysctl.orig" ] && return
  local s
  for s in "${KUBELET_SYSCTLS[@]}"; do echo "$s=$(sysctl -n "$s")"; done >"$E2E_DIR/sysctl.orig"
}

start_node() {
  mkdir -p "$E2E_DIR/kubelet" "$E2E_DIR/pod-logs"
  # Pods get this resolver instead of the host's, so a lookup never leaves the machine: CoreDNS
  # on the node address, which answers cluster.local and nothing else.
  echo "nameserver $NODE_IP" >"$E2E_DIR/kubelet/resolv.conf"
  cat >"$E2E_DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# cgroup v1, no systemd; containerd 1.6 cannot report its driver (RuntimeConfig is Unimplemented),
# so kubelet falls back to this value, which must match runc's SystemdCgroup = false.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CTRD_SOCK
address: 0.0.0.0
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
clusterDomain: cluster.local
clusterDNS: [$NODE_IP]
resolvConf: $E2E_DIR/kubelet/resolv.conf
podLogsDir: $E2E_DIR/pod-logs
volumePluginDir: $E2E_DIR/kubelet/volume-plugins
registerNode: true
serializeImagePulls: false
maxPods: 110
evictionHard: {memory.available: 100Mi, nodefs.available: 2%, imagefs.available: 2%, nodefs.inodesFree: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 95
EOF
  save_sysctls
  # --root-dir must be absolute. --node-ip must not be loopback: kubelet would then publish no
  # address and kube-proxy would never program a Service.
  start_daemon kubelet kubelet --config="$E2E_DIR/kubelet/config.yaml" \
    --kubeconfig="$PKI/kubelet.kubeconfig" --root-dir="$E2E_DIR/kubelet/root" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1

  cat >"$E2E_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $PKI/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Zero means "leave the kernel's value": these conntrack settings are global or read-only
# outside the host's own network namespace.
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
  start_daemon kube-proxy kube-proxy --config="$E2E_DIR/kube-proxy.yaml" --v=1
}

# --- main ------------------------------------------------------------------------------------

# All in a function, so bash has read the whole file before it runs anything: editing this
# script while a cluster-up runs must not change what that run does.
main() {
  if [ -z "${FERRY_LOG:-}" ]; then
    # Appended to (test-e2e runs cluster-up more than once), the previous one kept when large.
    export FERRY_LOG="$FERRY_CACHE/logs/cluster-up.log"
    mkdir -p "$(dirname "$FERRY_LOG")"
    if [ "$(stat -c %s "$FERRY_LOG" 2>/dev/null || echo 0)" -gt 10000000 ]; then
      mv "$FERRY_LOG" "$FERRY_LOG.old"
    fi
  fi
  ensure_packages
  if [ -d "$E2E_DIR" ] && cluster_healthy; then
    say "the cluster is already up (node $NODE_NAME, $NODE_IP)"
    print_result
    exit 0
  fi
  # Clear whatever a previous, partial run left.
  "$here/down.sh" >>"$FERRY_LOG" 2>&1 || die "clearing the last cluster failed; see $FERRY_LOG"

  "$here/../build-k8s.sh" all >/dev/null   # prints its own line when it has to build
  [ -x "$K8S_BIN/kube-apiserver" ] || die "build-k8s.sh did not put binaries in $K8S_BIN"
  if [ ! -x "$(coredns_bin)" ]; then slow_step "building CoreDNS $COREDNS_VERSION" build_coredns; fi
  if [ ! -x "$(gitserver_bin)" ]; then slow_step "building the git server" build_gitserver; fi
  mkdir -p "$TOOLS_BIN"
  ln -sfn "$K8S_BIN/kubectl" "$TOOLS_BIN/kubectl"

  rm -rf "$LOGS.prev"
  [ ! -d "$LOGS" ] || mv "$LOGS" "$LOGS.prev"
  mkdir -p "$E2E_DIR" "$LOGS" "$RUN"
  slow_step "starting the cluster: sealed network, registry, git server, control plane, node" \
    start_cluster
  print_result
}

# Everything after the builds, as one step (its chatter goes to the log).
start_cluster() {
  setup_network
  start_registry
  start_auth_registry
  start_daemon gitserver "$(gitserver_bin)" -listen "$NODE_IP:8080" -url "$GIT_URL" \
    -root "$E2E_DIR/git"
  wait_until 30 "registry" curl -fsS "http://$REGISTRY/v2/"
  wait_until 30 "registry with auth (401 without a password)" auth_registry_refuses_anonymous
  wait_until 30 "git server" curl -fsS "$GIT_URL/healthz"
  log "building and pushing images"
  "$here/../images/build.sh" "$REGISTRY" >"$LOGS/images.log"
  # A base image in the registry with auth too, for builds whose images are all private.
  skopeo copy --src-tls-verify=false --dest-tls-verify=false \
    --dest-creds "$AUTH_REGISTRY_USER:$AUTH_REGISTRY_PASSWORD" \
    "docker://$REGISTRY/busybox:1.35" "docker://$AUTH_REGISTRY/busybox:1.35" >>"$LOGS/images.log"

  make_pki
  start_control_plane
  start_coredns
  start_containerd
  start_node

  wait_until 60 "node $NODE_NAME to register" kc get node "$NODE_NAME"
  kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=120s
  # Pods cannot be created in a namespace before its default ServiceAccount exists.
  wait_until 60 "default ServiceAccount" kc -n default get serviceaccount default
}

on_exit() {
  local rc=$?
  [ $rc -eq 0 ] && return
  log "cluster-up failed (exit $rc). Its log: $FERRY_LOG; components: $LOGS/*.log"
  log "the next cluster-up starts over; make cluster-down removes what was started"
}
trap on_exit EXIT

main "$@"
