#!/usr/bin/env bash
# The integration tier's control plane: a real etcd and kube-apiserver (no node), on loopback.
#
#   e2e/apiserver.sh run -- <command...>   start, run the command with KUBECONFIG set, stop
#   e2e/apiserver.sh up                    start and leave running; prints `export KUBECONFIG=...`
#   e2e/apiserver.sh down                  stop what `up` started
#
# State lives in $FERRY_APISERVER_DIR (default /tmp/ferry-apiserver) and is thrown away on
# `down`. The binaries come from e2e/build-k8s.sh, cached outside the repository.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
DIR=${FERRY_APISERVER_DIR:-/tmp/ferry-apiserver}
ETCD_PORT=${FERRY_ETCD_PORT:-12379}
API_PORT=${FERRY_API_PORT:-16443}
KUBECONFIG_PATH="$DIR/kubeconfig"

log() { echo "apiserver.sh: $*" >&2; }

pki() {
  local pki="$DIR/pki"
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=ferry-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$pki/ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 2 -extfile "$pki/ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  # A static token for the test client, in the group that RBAC lets do anything.
  head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$pki/token"
  echo "$(cat "$pki/token"),ferry-test-admin,ferry-test-admin,system:masters" > "$pki/tokens.csv"
}

kubeconfig() {
  cat > "$KUBECONFIG_PATH" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: ferry-test
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 < "$DIR/pki/ca.crt")
users:
- name: admin
  user:
    token: $(cat "$DIR/pki/token")
contexts:
- name: ferry-test
  context: {cluster: ferry-test, user: admin}
current-context: ferry-test
KCFG
}

up() {
  if [ -f "$DIR/apiserver.pid" ] && kill -0 "$(cat "$DIR/apiserver.pid")" 2>/dev/null; then
    log "already running"
    echo "export KUBECONFIG=$KUBECONFIG_PATH"
    return
  fi
  local bin
  bin=$("$here/build-k8s.sh" apiserver | tail -n1)
  rm -rf "$DIR"
  mkdir -p "$DIR"
  pki
  kubeconfig
  "$bin/etcd" --name ferry-test --data-dir "$DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "ferry-test=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --unsafe-no-fsync > "$DIR/etcd.log" 2>&1 &
  echo $! > "$DIR/etcd.pid"
  "$bin/kube-apiserver" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
    --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --tls-cert-file="$DIR/pki/apiserver.crt" --tls-private-key-file="$DIR/pki/apiserver.key" \
    --client-ca-file="$DIR/pki/ca.crt" --token-auth-file="$DIR/pki/tokens.csv" \
    --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$DIR/pki/sa.pub" --service-account-signing-key-file="$DIR/pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    > "$DIR/apiserver.log" 2>&1 &
  echo $! > "$DIR/apiserver.pid"
  local deadline=$((SECONDS + 120))
  until curl -sf --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer $(cat "$DIR/pki/token")" \
      "https://127.0.0.1:$API_PORT/readyz" > /dev/null; do
    if [ $SECONDS -gt $deadline ] || ! kill -0 "$(cat "$DIR/apiserver.pid")" 2>/dev/null; then
      log "kube-apiserver did not become ready; last lines of its log:"
      tail -n 30 "$DIR/apiserver.log" >&2
      down
      exit 1
    fi
    sleep 0.5
  done
  log "ready after ${SECONDS}s"
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
}

down() {
  for component in apiserver etcd; do
    local pidfile="$DIR/$component.pid"
    if [ -f "$pidfile" ]; then
      local pid
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  rm -rf "$DIR/etcd"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    up > /dev/null
    trap down EXIT
    KUBECONFIG="$KUBECONFIG_PATH" "$@"
    ;;
  *) echo "usage: $0 up|down|run -- command..." >&2; exit 2 ;;
esac
