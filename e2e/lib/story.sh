# The demo's story, told against whatever cluster `kubectl` points at with Ferry running in it.
# Used by e2e/demo.sh (the real single-node cluster) and e2e/demo-apiserver.sh (API server only).
# Expects $root (the repository root) and `kubectl` on PATH.

chapter() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

tell_story() {
  local ns=team-a
  chapter "A mistake: the Application arrives before its Environments"
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  show kubectl -n "$ns" apply -f "$root/examples/shop.yaml"
  kubectl -n "$ns" wait --for=jsonpath='{.status.conditions[?(@.type=="Stalled")].status}'=True \
    application/shop --timeout=60s > /dev/null
  show kubectl -n "$ns" get applications
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

  chapter "The fix: apply the Environments; Ferry notices by itself"
  show kubectl -n "$ns" apply -f "$root/examples/environments.yaml"
  show kubectl -n "$ns" wait --for=condition=Ready environment --all --timeout=60s
  show kubectl -n "$ns" wait --for=condition=Ready application/shop --timeout=60s
  show kubectl -n "$ns" get environments
  show kubectl -n "$ns" get applications

  chapter "Deploying into another namespace needs that namespace's consent"
  kubectl create namespace team-b --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  show kubectl -n "$ns" apply -f - <<'YAML'
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: shared}
spec: {targetNamespace: team-b}
YAML
  kubectl -n "$ns" wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=TargetNamespaceNotConsenting \
    environment/shared --timeout=60s > /dev/null
  show kubectl -n "$ns" get environment shared \
    -o jsonpath='{.status.conditions[?(@.type=="Stalled")].message}{"\n"}'
  show kubectl annotate namespace team-b --overwrite ferry.dev/allow-deploy-from="$ns"
  show kubectl -n "$ns" wait --for=condition=Ready environment/shared --timeout=60s

  chapter "The API server rejects what is wrong, with a message that says how to fix it"
  show kubectl -n "$ns" apply -f - <<'YAML' || true
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: loop}
spec: {upstream: loop, health: {progressDeadline: 2m, stabilizationWindow: 5m}}
YAML
  show kubectl -n "$ns" apply -f - <<'YAML' || true
apiVersion: ferry.dev/v1alpha1
kind: Release
metadata: {name: shop-1.0.0}
spec: {application: shop, version: v1.0.0, commit: 9fceb02, image: "registry.example.com/shop:latest"}
YAML

  chapter "Events Ferry recorded"
  show kubectl -n "$ns" get events.v1.events.k8s.io --sort-by=.metadata.creationTimestamp \
    -o custom-columns=OBJECT:.regarding.name,TYPE:.type,REASON:.reason,MESSAGE:.note
}
