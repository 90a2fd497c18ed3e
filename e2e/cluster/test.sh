#!/usr/bin/env bash
# End-to-end check of the e2e cluster itself (`make test-e2e`). Each step prints PASS or FAIL; the
# first failure dumps diagnostics, leaves the cluster up for inspection and exits 1.
#
#   e2e/cluster/test.sh            # test, then cluster-down and the leftover check
#   E2E_KEEP=1 e2e/cluster/test.sh # test and leave the cluster running
#
# On the cluster from `make cluster-up` (brought up first if it is not):
#   1. the node is Ready, and its network namespace has no route out of the machine, neither
#      IPv4 nor IPv6; the seal (iptables and ip6tables, lib.sh) stops a pod and the node from
#      opening a connection to a host address outside the cluster's even when a route to it is
#      added, and the host's half of the seal still stops it with the node's half breached;
#      the API server refuses pods that would enter the host's namespaces or run privileged;
#   2. a Deployment of busybox httpd from the local registry becomes Available through an HTTP
#      readiness probe (non-root, read-only root filesystem, maxUnavailable 0);
#   3. a pod reaches it through its Service's ClusterIP; another finds it by name through the
#      cluster DNS (CoreDNS), and a name outside the cluster does not resolve;
#   4. a build pod clones a repository from the git server, builds a one-layer image and pushes
#      it through the registry's HTTP API; the node then pulls that image by digest and runs it;
#   5. the git server announces a push with an HMAC-signed webhook to a Service;
#   6. the second registry (AUTH_REGISTRY) refuses requests and pushes without the test user's
#      password or with a wrong one, and accepts them with it;
#   7. after cluster-down nothing is left (processes, mounts, netns, interfaces, routes, iptables
#      rules, cgroups).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

NS=ferry-e2e-smoke
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

diagnose() {
  echo "---- diagnostics"
  kc get nodes -o wide || true
  kc -n "$NS" get all,endpointslices -o wide || true
  kc -n "$NS" describe pods || true
  kc -n "$NS" get events --sort-by=.lastTimestamp || true
  local c
  for c in kubelet containerd kube-proxy; do
    echo "---- last lines of $LOGS/$c.log"
    tail -n 20 "$LOGS/$c.log" || true
  done
  echo "---- the cluster is left up; 'make cluster-down' removes it"
}

node_ready() {
  kc wait --for=condition=Ready "node/$NODE_NAME" --timeout=60s
}

no_route_out() {
  # Asked of the routing table, so nothing is sent even if this fails: an address outside every
  # network the harness made (TEST-NET-2, and 2001:db8::/32 for IPv6) and the machine's own
  # default gateways.
  local gw4 gw6 dst
  gw4=$(ip -4 route show default | awk '{print $3; exit}')
  gw6=$(ip -6 route show default | awk '{print $3; exit}')
  for dst in 198.51.100.1 ${gw4:+"$gw4"} 2001:db8::1 ${gw6:+"$gw6"}; do
    if in_ns ip route get "$dst" 2>/dev/null; then
      echo "the node namespace has a route to $dst"
      exit 1
    fi
    echo "no route from the node namespace to $dst"
  done
  if [ -n "$(in_ns ip -4 route show default)$(in_ns ip -6 route show default)" ]; then
    echo "the node namespace has a default route:"; in_ns ip route show default; in_ns ip -6 route show default
    exit 1
  fi
  echo "no default route in the node namespace, IPv4 or IPv6"
  # And a real connect, which fails before sending (no route): nothing leaves.
  for dst in 198.51.100.1 '[2001:db8::1]'; do
    if in_ns curl -gsS --max-time 5 -o /dev/null "http://$dst/" 2>"$tmp/curl.err"; then
      echo "the node namespace reached $dst"; exit 1
    fi
    echo "connect from the node namespace to $dst: $(cat "$tmp/curl.err")"
  done
}

# --- the seal ---------------------------------------------------------------------------------
#
# A listener on a host address that is none of the cluster's (a /32 and a /128 on the host's end
# of the veth: the host owns them like any of its addresses, and they go away with the veth),
# and what a breakout in the node namespace would do first: a route to it through the host. The
# seal must still stop every connection, and its DROP counters must show that it did.

PROBE_PORT=18999
PROBE4=198.18.0.1           # RFC 2544 benchmarking range: on this machine only
PROBE6=fd5e:a1ed::1         # unique local; the node's side gets fd5e:a1ed::2
PROBE_TEXT=reached-the-host
probe_cleanup=()   # commands undoing probe_up and breach_node_seal, run in reverse order

# Runs when seal_holds' subshell exits, passed or failed: a failing check must not leave the
# breach or the route behind.
cleanup_probe() {
  local i
  for ((i = ${#probe_cleanup[@]} - 1; i >= 0; i--)); do
    eval "${probe_cleanup[i]}" || echo "cleanup failed: ${probe_cleanup[i]}"
  done
  probe_cleanup=()
}

probe_up() {
  mkdir -p "$tmp/www"
  echo "$PROBE_TEXT" >"$tmp/www/probe"
  ip addr add "$PROBE4/32" dev "$HOST_IF"
  probe_cleanup+=("ip addr del $PROBE4/32 dev $HOST_IF")
  ip -6 addr add "$PROBE6/64" dev "$HOST_IF" nodad
  probe_cleanup+=("ip -6 addr del $PROBE6/64 dev $HOST_IF")
  busybox httpd -f -p "$PROBE4:$PROBE_PORT" -h "$tmp/www" &
  probe_cleanup+=("kill $!")
  busybox httpd -f -p "[$PROBE6]:$PROBE_PORT" -h "$tmp/www" &
  probe_cleanup+=("kill $!")
  # Both listeners answer the host itself.
  wait_until 10 "the IPv4 probe listener" curl -fsS "http://$PROBE4:$PROBE_PORT/probe"
  wait_until 10 "the IPv6 probe listener" curl -gfsS "http://[$PROBE6]:$PROBE_PORT/probe"
  echo "listening on the host: http://$PROBE4:$PROBE_PORT/probe and http://[$PROBE6]:$PROBE_PORT/probe"

  in_ns ip route add "$PROBE4/32" via "$HOST_IP" dev "$NODE_IF"
  probe_cleanup+=("in_ns ip route del $PROBE4/32 via $HOST_IP dev $NODE_IF")
  # The IPv6 seal drops neighbour discovery too, so the two ends learn each other statically.
  in_ns ip -6 addr add fd5e:a1ed::2/64 dev "$NODE_IF" nodad
  probe_cleanup+=("in_ns ip -6 addr del fd5e:a1ed::2/64 dev $NODE_IF")
  in_ns ip -6 neigh replace "$PROBE6" lladdr "$(cat "/sys/class/net/$HOST_IF/address")" \
    dev "$NODE_IF" nud permanent
  # (/sys shows the host's interfaces even under nsenter --net: ask ip instead.)
  ip -6 neigh replace fd5e:a1ed::2 lladdr "$(in_ns ip -br link show "$NODE_IF" | awk '{print $3}')" \
    dev "$HOST_IF" nud permanent
  echo "the node namespace now routes $PROBE4 and $PROBE6 to the host"
}

# breach_node_seal FAMILY ADDRESS — what a process with CAP_NET_ADMIN in the node namespace could
# do: let ADDRESS through the namespace's own half of the seal.
breach_node_seal() {
  local ipt=iptables; [ "$1" = 4 ] || ipt=ip6tables
  in_ns "$ipt" -w 5 -t mangle -I "$SEAL_CHAIN" 1 -d "$2" -j RETURN
  probe_cleanup+=("in_ns $ipt -w 5 -t mangle -D $SEAL_CHAIN -d $2 -j RETURN")
}

# blocked FAMILY WHERE(host|node) WHAT CMD... — CMD (a connect to the probe) must not reach it,
# and the seal's DROP counter on WHERE must have counted it: the seal is what stopped it.
blocked() {
  local family=$1 where=$2 what=$3 before after
  shift 3
  before=$(seal_drops "$family" "$where")
  "$@" >"$tmp/probe.out" 2>&1 || true
  if grep -q "$PROBE_TEXT" "$tmp/probe.out"; then
    echo "$what: reached the host's listener"; exit 1
  fi
  after=$(seal_drops "$family" "$where")
  if ! [[ "$before" =~ ^[0-9]+$ && "$after" =~ ^[0-9]+$ ]]; then
    echo "$what: the $where side's seal has no DROP rule"; exit 1
  fi
  if [ "$after" -le "$before" ]; then
    echo "$what: did not connect, but the $where side's seal dropped nothing ($before -> $after):"
    cat "$tmp/probe.out"
    exit 1
  fi
  echo "$what: blocked ($(tail -n1 "$tmp/probe.out")); the $where side's seal dropped $((after - before)) packets"
}

node_connects() { in_ns curl -gsS --max-time 4 "http://$1:$PROBE_PORT/probe"; }

# pod_connects NAME ADDRESS — a pod's attempt, its output printed (the pod itself succeeds).
pod_connects() {
  kc apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $NS}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532}
  containers:
  - name: probe
    image: $REGISTRY/busybox:1.35
    command: [sh, -c, 'printf "GET /probe HTTP/1.0\r\n\r\n" | nc -w 4 $2 $PROBE_PORT; echo "nc exit \$?"']
EOF
  kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded "pod/$1" --timeout=60s >/dev/null
  kc -n "$NS" logs "$1"
}

seal_holds() {
  trap cleanup_probe EXIT
  host_sealed || { echo "the host's seal is not in place"; exit 1; }
  node_sealed || { echo "the node namespace's seal is not in place"; exit 1; }
  probe_up
  blocked 4 node "node namespace -> $PROBE4" node_connects "$PROBE4"
  blocked 4 node "pod -> $PROBE4" pod_connects probe-inner "$PROBE4"
  blocked 6 node "node namespace -> $PROBE6" node_connects "[$PROBE6]"
  breach_node_seal 4 "$PROBE4"
  breach_node_seal 6 "$PROBE6"
  echo "the node namespace's seal now lets $PROBE4 and $PROBE6 through"
  blocked 4 host "node namespace -> $PROBE4" node_connects "$PROBE4"
  blocked 4 host "pod -> $PROBE4" pod_connects probe-outer "$PROBE4"
  blocked 6 host "node namespace -> $PROBE6" node_connects "[$PROBE6]"
}

# --- Pod Security -----------------------------------------------------------------------------

# refused NAMESPACE WHAT EXPECTED-MESSAGE POD-FIELD CONTAINER-FIELD — a server-side dry run of a
# pod with these fields (YAML flow mappings' contents) must be refused with that message.
refused() {
  local ns=$1 what=$2 expected=$3 pod_field=$4 container_field=$5
  if kc create --dry-run=server -o name -f - >"$tmp/admit.out" 2>&1 <<EOF; then
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: $ns}
spec:
  $pod_field
  containers:
  - {name: c, image: $REGISTRY/busybox:1.35, command: [sleep, "1"], securityContext: {$container_field}}
EOF
    echo "a pod with $what was admitted in $ns:"; cat "$tmp/admit.out"; exit 1
  fi
  if ! grep -qF -- "$expected" "$tmp/admit.out"; then
    echo "a pod with $what was refused in $ns, but not with '$expected':"; cat "$tmp/admit.out"; exit 1
  fi
  echo "$what in $ns: refused: $(grep -F -- "$expected" "$tmp/admit.out")"
}

host_namespaces_refused() {
  # The same pod without the fields is admitted: the refusals below are about those fields.
  kc create --dry-run=server -o name -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: plain, namespace: $NS}
spec:
  containers: [{name: c, image: $REGISTRY/busybox:1.35, command: [sleep, "1"]}]
EOF
  refused "$NS" hostNetwork \
    'violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)' 'hostNetwork: true' ''
  refused "$NS" hostPID \
    'violates PodSecurity "baseline:latest": host namespaces (hostPID=true)' 'hostPID: true' ''
  refused "$NS" privileged \
    'securityContext.privileged: Forbidden: disallowed by cluster policy' '' 'privileged: true'
  refused "$NS" NET_ADMIN \
    'violates PodSecurity "baseline:latest": non-default capabilities' '' 'capabilities: {add: [NET_ADMIN]}'
  # A namespace whose labels relax Pod Security still gets no privileged container: that is the
  # API server's --allow-privileged=false, which no label lifts.
  local relaxed="$NS-privileged"
  kc delete namespace "$relaxed" --ignore-not-found --wait --timeout=60s >/dev/null
  kc create namespace "$relaxed" >/dev/null
  kc label namespace "$relaxed" pod-security.kubernetes.io/enforce=privileged >/dev/null
  kc -n "$relaxed" wait --for=create serviceaccount/default --timeout=60s >/dev/null
  refused "$relaxed" privileged \
    'securityContext.privileged: Forbidden: disallowed by cluster policy' '' 'privileged: true'
  kc delete namespace "$relaxed" --wait=false >/dev/null
}

fresh_namespace() {
  kc delete namespace "$NS" --ignore-not-found --wait --timeout=120s
  kc create namespace "$NS"
  # Pods cannot be created before the namespace's default ServiceAccount exists.
  kc -n "$NS" wait --for=create serviceaccount/default --timeout=60s
}

deployment_ready() {
  kc apply -f - <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: $NS}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 0, maxSurge: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532}
      containers:
      - name: httpd
        image: $REGISTRY/busybox:1.35
        command: [sh, -c, 'echo "hello from \$(hostname)" >/www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /index.html, port: http}
          periodSeconds: 1
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
        volumeMounts: [{name: www, mountPath: /www}]
      volumes: [{name: www, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: $NS}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
EOF
  kc -n "$NS" rollout status deployment/web --timeout=120s
  kc -n "$NS" wait --for=condition=Available deployment/web --timeout=10s
  # The readiness probe really ran: every pod's Ready condition is True.
  kc -n "$NS" wait --for=condition=Ready pod -l app=web --timeout=10s
}

ready_endpoints_are() {
  [ "$(kc -n "$NS" get endpointslice -l kubernetes.io/service-name=web \
    -o jsonpath='{range .items[*].endpoints[*]}{.conditions.ready}{"\n"}{end}' | grep -c true)" = "$1" ]
}

service_reachable() {
  wait_until 30 "both replicas in the Service's endpoints" ready_endpoints_are 2
  local ip; ip=$(kc -n "$NS" get service web -o jsonpath='{.spec.clusterIP}')
  echo "Service web has ClusterIP $ip"
  # The client finds the Service through the environment variables kubelet injects. It retries
  # for a few seconds because kube-proxy programs the rules a moment after the endpoints appear.
  kc apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: $NS}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532}
  containers:
  - name: client
    image: $REGISTRY/busybox:1.35
    command:
    - sh
    - -c
    - |
      ok=0
      for i in \$(seq 1 30); do
        out=\$(printf 'GET /index.html HTTP/1.0\r\n\r\n' | nc -w 2 "\$WEB_SERVICE_HOST" "\$WEB_SERVICE_PORT" || true)
        case "\$out" in *"hello from web-"*) echo "\$out" | tail -n1; ok=\$((ok + 1)) ;; esac
        [ \$ok -ge 10 ] && exit 0
        sleep 0.2
      done
      exit 1
EOF
  kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/client --timeout=60s
  kc -n "$NS" logs client | tee "$tmp/client.log"
  echo "replicas that answered: $(sort -u "$tmp/client.log" | wc -l)"
}

service_by_name() {
  # curl from the toolbox image resolves through glibc like most programs; busybox's nslookup
  # asks the server directly. A name outside the cluster must fail: there is no upstream.
  kc apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: dns-client, namespace: $NS}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532}
  containers:
  - name: client
    image: $REGISTRY/toolbox:1
    command:
    - sh
    - -c
    - |
      set -e
      cat /etc/resolv.conf
      nslookup web.$NS.svc.cluster.local
      curl -fsS --retry 5 --retry-connrefused http://web/index.html
      if nslookup example.com; then echo "example.com resolved"; exit 1; fi
      echo "example.com: not resolved, as it should be"
EOF
  kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/dns-client --timeout=60s
  kc -n "$NS" logs dns-client | tee "$tmp/dns.log"
  grep -q '^hello from web-' "$tmp/dns.log"
}

build_push_run() {
  local name repo src="$tmp/src"
  name="e2e-app-$(date +%s)"
  repo="$GIT_URL/$name.git"
  # A commit pushed from the host to the git server; the server creates the repository.
  mkdir -p "$src"
  printf '#!/bin/sh\necho "hello from %s, commit $(cat /app/COMMIT)"\n' "$name" >"$src/run.sh"
  git -C "$src" init --quiet --initial-branch=main
  git -C "$src" add run.sh
  git -C "$src" -c user.name=e2e -c user.email=e2e@ferry.invalid commit --quiet -m "e2e app"
  git -C "$src" push --quiet "$repo" main
  local commit; commit=$(git -C "$src" rev-parse HEAD)
  echo "pushed commit $commit to $repo"

  kc -n "$NS" create configmap build-script --from-file=build-push.sh="$here/testdata/build-push.sh"
  kc apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: build, namespace: $NS}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532, runAsGroup: 65532}
  containers:
  - name: build
    image: $REGISTRY/toolbox:1
    command: [sh, /scripts/build-push.sh]
    env:
    - {name: REPO, value: "$repo"}
    - {name: REGISTRY, value: "$REGISTRY"}
    - {name: IMAGE, value: "$name"}
    volumeMounts: [{name: scripts, mountPath: /scripts}]
  volumes: [{name: scripts, configMap: {name: build-script}}]
EOF
  kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/build --timeout=120s
  kc -n "$NS" logs build | tee "$tmp/build.log"
  local ref; ref=$(sed -n 's/^pushed \([^ ]*\) commit .*/\1/p' "$tmp/build.log")
  [ -n "$ref" ]
  grep -q "commit $commit\$" "$tmp/build.log"

  # The node pulls what the pod pushed, by digest, from the same address.
  kc apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: run, namespace: $NS}
spec:
  restartPolicy: Never
  containers:
  - {name: app, image: "$ref"}
EOF
  kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/run --timeout=60s
  kc -n "$NS" logs run | tee "$tmp/run.log"
  grep -qx "hello from $name, commit $commit" "$tmp/run.log"
}

webhook_delivered() {
  local name secret=e2e-secret src="$tmp/hook-src"
  name="e2e-hook-$(date +%s)"
  # A one-shot receiver behind a Service: keeps the request it gets, answers 204, prints it.
  kc -n "$NS" create configmap hook-script \
    --from-file=webhook-receiver.sh="$here/testdata/webhook-receiver.sh"
  kc apply -f - <<EOF
apiVersion: v1
kind: Pod
metadata: {name: hook, namespace: $NS, labels: {app: hook}}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65532}
  containers:
  - name: hook
    image: $REGISTRY/busybox:1.35
    command: [sh, -c, "nc -l -p 9000 -e /scripts/webhook-receiver.sh && cat /tmp/request"]
    ports: [{containerPort: 9000}]
    volumeMounts: [{name: scripts, mountPath: /scripts}]
  volumes: [{name: scripts, configMap: {name: hook-script, defaultMode: 0755}}]
---
apiVersion: v1
kind: Service
metadata: {name: hook, namespace: $NS}
spec:
  selector: {app: hook}
  ports: [{port: 80, targetPort: 9000}]
EOF
  kc -n "$NS" wait --for=condition=Ready pod/hook --timeout=60s
  local ip; ip=$(kc -n "$NS" get service hook -o jsonpath='{.spec.clusterIP}')
  "$here/git-webhook.sh" "$name" "http://$ip/push" "$secret"

  mkdir -p "$src"
  echo one >"$src/file"
  git -C "$src" init --quiet --initial-branch=main
  git -C "$src" add file
  git -C "$src" -c user.name=e2e -c user.email=e2e@ferry.invalid commit --quiet \
    -m "Fix the thing (#123)"
  git -C "$src" push --quiet "$GIT_URL/$name.git" main
  local commit; commit=$(git -C "$src" rev-parse HEAD)

  # The git server retries while the receiver is not listening yet.
  kc -n "$NS" wait --for=jsonpath='{.status.phase}'=Succeeded pod/hook --timeout=60s
  kc -n "$NS" logs hook >"$tmp/hook.log"
  cat "$tmp/hook.log"; echo
  grep -q '^X-Github-Event: push$' "$tmp/hook.log"
  local body signature expected
  body=$(tail -n1 "$tmp/hook.log")
  signature=$(sed -n 's/^X-Hub-Signature-256: //p' "$tmp/hook.log")
  expected="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/.*= //')"
  [ "$signature" = "$expected" ] || { echo "signature $signature, expected $expected"; exit 1; }
  [ "$(jq -r .after <<<"$body")" = "$commit" ]
  [ "$(jq -r .ref <<<"$body")" = refs/heads/main ]
  [ "$(jq -r '.commits[0].message' <<<"$body")" = "Fix the thing (#123)" ]
}

# http_code URL [CURL-ARGS...] — the status code of a GET.
http_code() {
  local url=$1; shift
  curl -sS -o /dev/null -w '%{http_code}' "$@" "$url"
}

auth_registry() {
  local url="http://$AUTH_REGISTRY/v2/" code
  code=$(http_code "$url")
  echo "GET $url without credentials: $code"; [ "$code" = 401 ]
  code=$(http_code "$url" -u "$AUTH_REGISTRY_USER:wrong-$AUTH_REGISTRY_PASSWORD")
  echo "GET $url with a wrong password: $code"; [ "$code" = 401 ]
  code=$(http_code "$url" -u "$AUTH_REGISTRY_USER:$AUTH_REGISTRY_PASSWORD")
  echo "GET $url as $AUTH_REGISTRY_USER: $code"; [ "$code" = 200 ]
  # A push, the way a build's publish step would: refused with a wrong password, then accepted.
  local src="docker://$REGISTRY/busybox:1.35" dst="docker://$AUTH_REGISTRY/e2e/busybox:1.35"
  if skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
    --dest-creds "$AUTH_REGISTRY_USER:wrong" "$src" "$dst" 2>"$tmp/skopeo.err"; then
    echo "a push with a wrong password was accepted"; exit 1
  fi
  echo "push with a wrong password: $(tail -n1 "$tmp/skopeo.err")"
  grep -qi unauthorized "$tmp/skopeo.err"
  skopeo copy --quiet --src-tls-verify=false --dest-tls-verify=false \
    --dest-creds "$AUTH_REGISTRY_USER:$AUTH_REGISTRY_PASSWORD" "$src" "$dst"
  code=$(http_code "http://$AUTH_REGISTRY/v2/e2e/busybox/manifests/1.35" \
    -u "$AUTH_REGISTRY_USER:$AUTH_REGISTRY_PASSWORD" -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json')
  echo "pushed with the password; its manifest: $code"; [ "$code" = 200 ]
}

teardown_clean() {
  "$here/down.sh"
}

main() {
  "$here/up.sh" >/dev/null
  step "node $NODE_NAME is Ready" node_ready
  step "nothing can be routed out of the cluster (IPv4 and IPv6)" no_route_out
  step "namespace $NS is fresh" fresh_namespace
  step "the API server refuses pods in the host's namespaces and privileged pods" host_namespaces_refused
  step "the seal stops the node and pods from connecting to the host, also with a route to it" seal_holds
  step "Deployment of busybox httpd becomes Ready through an HTTP readiness probe" deployment_ready
  step "a pod reaches the Deployment through its Service (ClusterIP)" service_reachable
  step "a pod finds the Service by name through cluster DNS; outside names do not resolve" service_by_name
  step "a pod clones from the git server and pushes an image; the node pulls and runs it" build_push_run
  step "the git server announces a push to a Service with a signed webhook" webhook_delivered
  step "the registry at $AUTH_REGISTRY wants the test user's password" auth_registry
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "E2E_KEEP=1: cluster left running"
  else
    step "after cluster-down nothing is left" teardown_clean
  fi
  echo "ALL PASSED"
}

main "$@"
