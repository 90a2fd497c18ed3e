#!/usr/bin/env bash
# End-to-end check of the e2e cluster itself (`make test-e2e`). Each step prints PASS or FAIL; the
# first failure dumps diagnostics, leaves the cluster up for inspection and exits 1.
#
#   e2e/cluster/test.sh            # test, then cluster-down and the leftover check
#   E2E_KEEP=1 e2e/cluster/test.sh # test and leave the cluster running
#
# On the cluster from `make cluster-up` (brought up first if it is not):
#   1. the node is Ready, and its network namespace has no route out of the machine;
#   2. a Deployment of busybox httpd from the local registry becomes Available through an HTTP
#      readiness probe (non-root, read-only root filesystem, maxUnavailable 0);
#   3. a pod reaches it through its Service's ClusterIP; another finds it by name through the
#      cluster DNS (CoreDNS), and a name outside the cluster does not resolve;
#   4. a build pod clones a repository from the git server, builds a one-layer image and pushes
#      it through the registry's HTTP API; the node then pulls that image by digest and runs it;
#   5. the git server announces a push with an HMAC-signed webhook to a Service;
#   6. after cluster-down nothing is left (processes, mounts, netns, interfaces, routes, iptables
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
  # network the harness made (TEST-NET-2) and the machine's own default gateway.
  local gw; gw=$(ip route show default | awk '{print $3; exit}')
  local dst
  for dst in 198.51.100.1 ${gw:+"$gw"}; do
    if in_ns ip route get "$dst" 2>/dev/null; then
      echo "the node namespace has a route to $dst"
      exit 1
    fi
    echo "no route from the node namespace to $dst"
  done
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

teardown_clean() {
  "$here/down.sh"
}

main() {
  "$here/up.sh" >/dev/null
  step "node $NODE_NAME is Ready" node_ready
  step "nothing can be routed out of the cluster" no_route_out
  step "namespace $NS is fresh" fresh_namespace
  step "Deployment of busybox httpd becomes Ready through an HTTP readiness probe" deployment_ready
  step "a pod reaches the Deployment through its Service (ClusterIP)" service_reachable
  step "a pod finds the Service by name through cluster DNS; outside names do not resolve" service_by_name
  step "a pod clones from the git server and pushes an image; the node pulls and runs it" build_push_run
  step "the git server announces a push to a Service with a signed webhook" webhook_delivered
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    echo "E2E_KEEP=1: cluster left running"
  else
    step "after cluster-down nothing is left" teardown_clean
  fi
  echo "ALL PASSED"
}

main "$@"
