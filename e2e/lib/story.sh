# The demo's story, told against whatever cluster `kubectl` points at with Ferry running in it.
# Used by e2e/demo.sh (the real single-node cluster) and e2e/demo-apiserver.sh (API server only).
# Expects $root (the repository root) and `kubectl` on PATH; $STORY_HINT, if set, is printed
# when a wait gives up (where to look next, e.g. the controller's log).
#
# It can be told again on the same cluster: it first removes what an earlier telling left in its
# namespaces, so every wait sees this telling's own transitions.

STORY_NS=team-a
STORY_TARGET_NS=team-b
STORY_WAIT=60s   # every wait's deadline

chapter() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }

# await WHAT CMD... — runs CMD, a wait with its own deadline (kubectl wait --timeout=...), quietly;
# if it gives up, says what it was waiting for and fails.
await() {
  local what=$1 out
  shift
  if ! out=$("$@" 2>&1); then
    gave_up "$what" "$out"
    return 1
  fi
}

# show_await WHAT CMD... — the same, with the command and its output shown as part of the story.
show_await() {
  local what=$1 out
  shift
  printf '\033[2m$ %s\033[0m\n' "$*"
  if ! out=$("$@" 2>&1); then
    gave_up "$what" "$out"
    return 1
  fi
  printf '%s\n' "$out"
}

gave_up() {
  {
    printf 'Gave up after %s waiting for %s.\n' "$STORY_WAIT" "$1"
    printf '%s\n' "$2" | sed 's/^/  | /'
    kubectl -n "$STORY_NS" get applications,environments 2>&1 | sed 's/^/  | /' || true
    [ -z "${STORY_HINT:-}" ] || printf '%s\n' "$STORY_HINT"
  } >&2
}

# Deletes every Ferry object in the story's namespaces, their Events, and the consent annotation.
reset_story() {
  local kinds ns found=""
  kinds=$(kubectl api-resources --api-group=ferry.dev --namespaced -o name | paste -sd, -)
  [ -n "$kinds" ] || return 0
  for ns in "$STORY_NS" "$STORY_TARGET_NS"; do
    kubectl get namespace "$ns" >/dev/null 2>&1 || continue
    [ -z "$(kubectl -n "$ns" get "$kinds" -o name)" ] || found="$found $ns"
  done
  [ -n "$found" ] || return 0
  echo "(telling it again: first removing what the last telling left in$found)"
  for ns in $found; do
    await "the last telling's Ferry objects in $ns to be deleted" \
      kubectl -n "$ns" delete "$kinds" --all --wait --timeout="$STORY_WAIT"
  done
  kubectl -n "$STORY_NS" delete events --all >/dev/null
  kubectl annotate namespace "$STORY_TARGET_NS" ferry.dev/allow-deploy-from- >/dev/null 2>&1 || true
}

tell_story() {
  local ns=$STORY_NS
  reset_story
  chapter "A tenant namespace lets Ferry read the Secrets its Applications name"
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  echo "Ferry may read Secrets only where a namespace grants it (no cluster-wide Secret access):"
  kubectl -n "$ns" create rolebinding ferry-tenant --clusterrole=ferry-tenant \
    --serviceaccount=ferry-system:ferry --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $ns create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=ferry-system:ferry"

  chapter "A mistake: the Application arrives before its Environments"
  show kubectl -n "$ns" apply -f "$root/examples/shop.yaml"
  await "the Application shop to be Stalled because its Environments do not exist" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.conditions[?(@.type=="Stalled")].status}'=True \
    application/shop --timeout="$STORY_WAIT"
  show kubectl -n "$ns" get applications
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

  chapter "The fix: apply the Environments; Ferry notices by itself"
  show kubectl -n "$ns" apply -f "$root/examples/environments.yaml"
  show_await "every Environment in $ns to be Ready" \
    kubectl -n "$ns" wait --for=condition=Ready environment --all --timeout="$STORY_WAIT"
  show_await "the Application shop to be Ready once its Environments exist" \
    kubectl -n "$ns" wait --for=condition=Ready application/shop --timeout="$STORY_WAIT"
  show kubectl -n "$ns" get environments
  show kubectl -n "$ns" get applications

  chapter "Deploying into another namespace needs that namespace's consent"
  kubectl create namespace "$STORY_TARGET_NS" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  show kubectl -n "$ns" apply -f - <<YAML
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: shared}
spec: {targetNamespace: $STORY_TARGET_NS}
YAML
  await "the Environment shared to report that $STORY_TARGET_NS has not consented" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=TargetNamespaceNotConsenting \
    environment/shared --timeout="$STORY_WAIT"
  show kubectl -n "$ns" get environment shared \
    -o jsonpath='{.status.conditions[?(@.type=="Stalled")].message}{"\n"}'
  show kubectl annotate namespace "$STORY_TARGET_NS" --overwrite ferry.dev/allow-deploy-from="$ns"
  show_await "the Environment shared to be Ready once $STORY_TARGET_NS consents" \
    kubectl -n "$ns" wait --for=condition=Ready environment/shared --timeout="$STORY_WAIT"

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
