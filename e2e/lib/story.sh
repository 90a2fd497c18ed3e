# shellcheck shell=bash
# The demo's story, told against whatever cluster `kubectl` points at with Ferry running in it.
# Used by e2e/demo.sh (the real single-node cluster) and e2e/demo-apiserver.sh (API server only).
# Expects $root (the repository root), `kubectl` on PATH, e2e/lib/ferry.sh sourced (`example`,
# `push_example_app`) with $GIT_URL and $REGISTRY set; $STORY_HINT, if set, is printed when a
# wait gives up (where to look next, e.g. the controller's log). $STORY_BUILDS=0 tells the
# story that build pods cannot run (an API server without a node).
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

# retry_delete NS KINDS — deletes every object of KINDS in NS, again for a while if a Release
# is refused because Ferry has not yet marked it as running nowhere.
retry_delete() {
  for _ in $(seq 30); do
    kubectl -n "$1" delete "$2" --all --wait --timeout="$STORY_WAIT" 2>/dev/null && return 0
    sleep 1
  done
  kubectl -n "$1" delete "$2" --all --wait --timeout="$STORY_WAIT"
}

# Deletes every Ferry object in the story's namespaces, their Events, pat's Role and binding,
# and the target namespace's consent annotation and grant.
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
  # Applications first: their Releases then run nowhere (a Release that runs or waits somewhere
  # may not be deleted, see the ferry-releases policy), and Ferry marks them so at once.
  for ns in $found; do
    await "the last telling's Applications in $ns to be deleted" \
      kubectl -n "$ns" delete applications --all --wait --timeout="$STORY_WAIT"
  done
  for ns in $found; do
    await "the last telling's Ferry objects in $ns to be deleted" \
      retry_delete "$ns" "$kinds"
  done
  kubectl -n "$STORY_NS" delete events --all >/dev/null
  kubectl -n "$STORY_NS" delete rolebinding/application-editors role/application-editor \
    --ignore-not-found >/dev/null
  kubectl annotate namespace "$STORY_TARGET_NS" ferry.dev/allow-deploy-from- >/dev/null 2>&1 || true
  kubectl -n "$STORY_TARGET_NS" delete rolebinding/ferry-deployer --ignore-not-found >/dev/null 2>&1 || true
}

# The commit becomes a BuildJob, its pod builds and publishes the image, the controller checks
# the registry and records the Release; then a commit whose tests fail.
tell_builds() {
  local ns=$STORY_NS job=shop-${STORY_COMMIT:0:7}
  chapter "Ferry noticed the commit: a BuildJob per commit, built in an unprivileged pod"
  await "the BuildJob $job" \
    kubectl -n "$ns" wait --for=create "buildjob/$job" --timeout="$STORY_WAIT"
  if [ "${STORY_BUILDS:-1}" = 0 ]; then
    show kubectl -n "$ns" get buildjobs
    echo "(this API server has no node, so the build pod never starts: 'make demo' runs it)"
    return
  fi
  show_await "the BuildJob $job to succeed: fetch, test and build, publish, verified in the registry" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.phase}'=Succeeded "buildjob/$job" --timeout=240s
  show kubectl -n "$ns" get buildjobs
  show kubectl -n "$ns" logs "pod/$job" -c build
  chapter "The verified image became an immutable Release"
  show_await "the Release of $STORY_COMMIT" \
    kubectl -n "$ns" wait --for=create "release/shop-0.0.0-${STORY_COMMIT:0:7}" --timeout="$STORY_WAIT"
  show kubectl -n "$ns" get releases
  show kubectl -n "$ns" get application shop \
    -o jsonpath='commit {.status.latestCommit}{"\n"}build  {.status.latestBuild}{"\n"}release {.status.latestRelease}{"\n"}'

  chapter "A commit whose tests fail: the BuildJob fails with its log, and no Release"
  local work bad
  work=$(mktemp -d)
  git clone --quiet "$GIT_URL/shop.git" "$work"
  printf '<!doctype html>\n<title>Shop</title>\n<p>Oops, the heading is gone\n' > "$work/www/index.html"
  git -C "$work" -c user.name=Ferry -c user.email=demo@ferry.invalid commit --quiet -am "Restyle the front page (#12)"
  printf '\033[2m$ %s\033[0m\n' "git commit -am 'Restyle the front page (#12)' && git push"
  git -C "$work" push --quiet origin main
  bad=$(git -C "$work" rev-parse HEAD)
  rm -rf "$work"
  # Noticed at the next poll (pollInterval 30s in the example; a push webhook is at once).
  await "Ferry to notice $bad (it polls every 30s)" \
    kubectl -n "$ns" wait --for=create "buildjob/shop-${bad:0:7}" --timeout=90s
  await "the BuildJob of $bad to fail" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.phase}'=Failed "buildjob/shop-${bad:0:7}" --timeout=240s
  show kubectl -n "$ns" get buildjobs
  show kubectl -n "$ns" get buildjob "shop-${bad:0:7}" \
    -o jsonpath='{.status.failure.step}: {.status.failure.reason}: {.status.failure.message}{"\n"}log tail:{"\n"}{.status.failure.logTail}{"\n"}'
  show kubectl -n "$ns" get releases
}

# The release of the example's commit rolls out to dev and becomes Healthy; then a release whose
# container exits at start (made by hand: an import of an image in the shop's repository) is
# rolled back by itself, with the reason in the history, the Events and the Release's status.
tell_rollouts() {
  local ns=$STORY_NS release image commit
  release=$(kubectl -n "$ns" get application shop -o jsonpath='{.status.latestRelease}')
  chapter "The release rolls out to dev, the first stage, and proves healthy"
  echo "dev takes the newest Release ($release): a Deployment and a Service shop-dev, rolled out"
  echo "with RollingUpdate, ready within dev's progressDeadline, then stable through its"
  echo "stabilizationWindow (10s)."
  show_await "$release to be Healthy in dev" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.environments[?(@.name=="dev")].phase}'=Healthy \
    application/shop --timeout=120s
  show kubectl -n "$ns" get applications
  show kubectl -n "$ns" get deployments,services,pods -l ferry.dev/environment=dev

  chapter "A release that crashes is rolled back by itself"
  # The rollout scenarios' test server (e2e/lib/testserver.sh), built to exit at start and
  # pushed into the shop's own repository: an import must name an image of its Application's
  # spec.image.repository (the ferry-import-image policy).
  image=$(TESTSERVER_REPO=$(kubectl -n "$ns" get application shop -o jsonpath='{.spec.image.repository}') \
    testserver_crash 9.9.9)
  commit=$(printf 'shop 9.9.9' | sha1sum | cut -c1-40)
  echo "A Release made by hand (an import: it names its importer, as the API server knows them),"
  echo "of an image whose container exits as soon as it starts:"
  importer=$(kubectl auth whoami -o jsonpath='{.status.userInfo.username}')
  show kubectl -n "$ns" apply -f - <<YAML
apiVersion: ferry.dev/v1alpha1
kind: Release
metadata: {name: shop-9.9.9}
spec: {application: shop, version: 9.9.9, commit: $commit, image: "$image", importedBy: "$importer"}
YAML
  show_await "dev to roll shop-9.9.9 back" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.environments[?(@.name=="dev")].phase}'=RolledBack \
    application/shop --timeout=120s
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.environments[?(@.name=="dev")].rollout}{.kind} to {.release}; failed verdict: {.cause.reason}: {.cause.message}{"\n"}{end}'
  show_await "the rollback to $release to be verified" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.environments[?(@.name=="dev")].rollout.verdict.healthy}'=true \
    application/shop --timeout=120s
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.environments[?(@.name=="dev")].history[*]}{.time} {.kind} {.release} {.outcome}: {.reason}{"\n"}{end}'
  show kubectl -n "$ns" get releases
  show kubectl -n "$ns" get release shop-9.9.9 \
    -o jsonpath='{range .status.environments[*]}{.name}: {.state}: {.reason}{"\n"}{end}'
  show kubectl -n "$ns" get events.v1.events.k8s.io --field-selector regarding.kind=Application \
    -o custom-columns=TYPE:.type,REASON:.reason,NOTE:.note --sort-by=.metadata.creationTimestamp
}

# The example's Application with prod pinned to RELEASE for REASON by BY (no pin when RELEASE
# is empty): what an administrator (or a GitOps repository) applies to approve or roll back.
# BY is who writes it as the API server authenticates them (the ferry-approve policy checks it).
shop_pinned() {
  if [ -z "$1" ]; then
    example shop.yaml
  else
    example shop.yaml | sed "/^    - name: prod\$/a\\      pin: {release: $1, reason: \"$2\", by: \"$3\"}"
  fi
}

# The user kubectl is authenticated as.
whoami() { kubectl auth whoami -o jsonpath='{.status.userInfo.username}'; }

# apply_pin [RELEASE REASON] — shows and applies the example's Application with prod pinned to
# RELEASE for REASON (without a pin when RELEASE is empty), as an administrator would.
apply_pin() {
  local note="prod without its pin" me
  me=$(whoami)
  [ -z "$1" ] || note="prod: pin: {release: $1, reason: \"$2\", by: $me}"
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $STORY_NS apply -f shop.yaml    # $note"
  shop_pinned "$1" "$2" "$me" | kubectl -n "$STORY_NS" apply -f - >/dev/null
}

# The Application of a YAML stream (shop.yaml also holds its webhook Secret, which pat may
# not read).
application_only() { awk 'BEGIN {RS = "\n---\n"; ORS = "\n"} /\nkind: Application\n/'; }

# prints the environment ENV's field PATH (jsonpath below the environment) of the shop.
env_field() {
  kubectl -n "$STORY_NS" get application shop -o jsonpath="{.status.environments[?(@.name==\"$1\")]$2}"
}

# Waits until environment ENV runs RELEASE with phase PHASE.
await_env() {
  local env=$1 release=$2 phase=$3 timeout=$4
  show_await "$release to run in $env ($phase)" \
    kubectl -n "$STORY_NS" wait --for=jsonpath="{.status.environments[?(@.name==\"$env\")].current}"="$release" \
    application/shop --timeout="$timeout"
  await "$env to be $phase" \
    kubectl -n "$STORY_NS" wait --for=jsonpath="{.status.environments[?(@.name==\"$env\")].phase}"="$phase" \
    application/shop --timeout="$timeout"
}

# The pipeline: what is healthy in dev goes on to staging by itself (verified there by a test
# pod), prod waits for approval; approving is a pin applied like any change; a new commit flows
# through dev and staging while prod stays pinned; removing the pin makes prod follow staging
# again; a pin of an older release rolls back by hand, with the reason in the history.
tell_promotion() {
  local ns=$STORY_NS first second work ip
  first=$(env_field dev .current)
  chapter "What is healthy in dev goes on to staging by itself, verified there by a test pod"
  echo "staging promotes from dev (Automatic, BlueGreen, a 20s window with an HTTP check), then"
  echo "runs its verification: a test pod that fetches the front page through SERVICE_URL."
  await_env staging "$first" Healthy 240s
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.environments[?(@.name=="staging")].rollout}{.release}: {.verdict.message}{"\n"}verification: passed={.verification.passed}: {.verification.message}{"\n"}{end}'
  show kubectl -n "$ns" get pods -l ferry.dev/verification=true
  echo "shop-9.9.9 failed in dev, so it never went further:"
  show kubectl -n "$ns" get release shop-9.9.9 \
    -o jsonpath='{range .status.environments[*]}{.name}: {.state}{"\n"}{end}'

  chapter "prod is Manual: the release waits there for approval"
  show_await "prod to await approval of $first" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.environments[?(@.name=="prod")].phase}'=AwaitingApproval \
    application/shop --timeout=60s
  show kubectl -n "$ns" get applications
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.environments[?(@.name=="prod")].conditions[?(@.type=="AwaitingApproval")]}{.type}={.status}: {.message}{"\n"}{end}'
  show kubectl -n "$ns" get releases

  chapter "Approving takes the verb approve on the Environment: editing the Application is not enough"
  echo "pat may edit Applications in $ns, but holds no approve; the API server refuses pat's pin"
  echo "(the ValidatingAdmissionPolicy ferry-approve of manifests/ferry.yaml), and nothing changes:"
  show kubectl -n "$ns" create role application-editor --verb=get,list,watch,create,patch,update \
    --resource=applications.ferry.dev
  show kubectl -n "$ns" create rolebinding application-editors --role=application-editor --user=pat
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $ns apply --server-side -f shop-application.yaml --as=pat    # prod: pin: {release: $first, reason: \"looks fine to me\", by: pat}"
  local refusal
  if refusal=$(shop_pinned "$first" "looks fine to me" pat | application_only |
    kubectl -n "$ns" apply --server-side --as=pat -f - 2>&1); then
    echo "The API server accepted pat's pin: the approval policy is not enforced. $refusal" >&2
    return 1
  fi
  printf '%s\n' "$refusal"
  echo "The ferry-approver ClusterRole grants approve (in a namespace, or narrowed to some"
  echo "Environments by a Role with resourceNames); cluster-admin, as here, holds every verb."

  chapter "Approving is a pin with a reason, applied like any change (kubectl apply, or a GitOps commit)"
  apply_pin "$first" "CHG-1234 approved by the change board"
  await_env prod "$first" Pinned 120s
  show kubectl -n "$ns" get applications
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.environments[?(@.name=="prod")].history[*]}{.kind} {.release} {.outcome} by {.actor}: {.reason}{"\n"}{end}'
  show kubectl -n "$ns" get release "$first" \
    -o jsonpath='{range .status.environments[*]}{.name}: {.state}, verdict {.verdict}, verified {.verification.passed}{"\n"}{end}'

  chapter "A new commit flows through dev and staging by itself; pinned prod shows it as its candidate"
  ip=$(kubectl -n ferry-system get service ferry-webhook -o jsonpath='{.spec.clusterIP}')
  echo "(the git server now announces pushes to Ferry's webhook, so the build starts at once)"
  # shellcheck disable=SC2154 # $root is set by the sourcing script (see above)
  "$root/e2e/cluster/git-webhook.sh" shop "http://$ip:9443/webhooks/$ns/shop" demo-only-change-me
  work=$(mktemp -d)
  git clone --quiet "$GIT_URL/shop.git" "$work"
  printf '<!doctype html>\n<title>Shop</title>\n<h1>Welcome to the shop</h1>\n<p>Now with a basket.\n' > "$work/www/index.html"
  git -C "$work" -c user.name=Ferry -c user.email=demo@ferry.invalid commit --quiet -am "Add a basket (#13)"
  printf '\033[2m$ %s\033[0m\n' "git commit -am 'Add a basket (#13)' && git push"
  git -C "$work" push --quiet origin main
  second=shop-0.0.0-$(git -C "$work" rev-parse --short=7 HEAD)
  rm -rf "$work"
  await_env dev "$second" Healthy 120s
  await_env staging "$second" Healthy 240s
  show kubectl -n "$ns" get applications

  chapter "Removing the pin: prod follows staging again, and waits for approval of $second"
  apply_pin "" ""
  show_await "prod to await approval of $second" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.environments[?(@.name=="prod")].candidate}'="$second" \
    application/shop --timeout=60s
  await "prod to be AwaitingApproval" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.environments[?(@.name=="prod")].phase}'=AwaitingApproval \
    application/shop --timeout=60s
  show kubectl -n "$ns" get applications

  chapter "Approved, then rolled back by hand: a pin of the older release, with the reason"
  apply_pin "$second" "CHG-1240 approved"
  await_env prod "$second" Pinned 120s
  apply_pin "$first" "INC-77: basket errors; back to the previous release"
  await_env prod "$first" Pinned 120s
  show kubectl -n "$ns" get applications
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.environments[?(@.name=="prod")].history[*]}{.kind} {.release} {.outcome} by {.actor}: {.reason}{"\n"}{end}'
  show kubectl -n "$ns" get releases
  show kubectl -n "$ns" get events.v1.events.k8s.io --field-selector regarding.kind=Application \
    -o custom-columns=REASON:.reason,NOTE:.note --sort-by=.metadata.creationTimestamp
}

tell_story() {
  local ns=$STORY_NS
  reset_story
  chapter "A tenant namespace lets Ferry read the Secrets its Applications name and run them there"
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  if [ "${STORY_BUILDS:-1}" = 0 ]; then
    # What a cluster's controller-manager makes in every namespace (an API server alone does
    # not); without it the API server refuses any pod.
    kubectl -n "$ns" create serviceaccount default --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  fi
  echo "Ferry may read Secrets only where a namespace grants it (no cluster-wide Secret access):"
  kubectl -n "$ns" create rolebinding ferry-tenant --clusterrole=ferry-tenant \
    --serviceaccount=ferry-system:ferry --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $ns create rolebinding ferry-tenant --clusterrole=ferry-tenant --serviceaccount=ferry-system:ferry"
  echo "and write Deployments and Services only where a namespace grants it (none cluster-wide):"
  kubectl -n "$ns" create rolebinding ferry-deployer --clusterrole=ferry-deployer \
    --serviceaccount=ferry-system:ferry --dry-run=client -o yaml | kubectl apply -f - > /dev/null
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $ns create rolebinding ferry-deployer --clusterrole=ferry-deployer --serviceaccount=ferry-system:ferry"

  chapter "The shop's source is pushed to the git server"
  printf '\033[2m$ %s\033[0m\n' "git push $GIT_URL/shop.git main    # examples/shop-app"
  STORY_COMMIT=$(push_example_app shop)
  echo "main is at $STORY_COMMIT"

  chapter "A mistake: the Application arrives before its Environments"
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $ns apply -f examples/shop.yaml"
  example shop.yaml | kubectl -n "$ns" apply -f -
  await "the Application shop to be Stalled because its Environments do not exist" \
    kubectl -n "$ns" wait --for=jsonpath='{.status.conditions[?(@.type=="Stalled")].status}'=True \
    application/shop --timeout="$STORY_WAIT"
  show kubectl -n "$ns" get applications
  show kubectl -n "$ns" get application shop \
    -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.reason}: {.message}{"\n"}{end}'

  chapter "The fix: apply the Environments; Ferry notices by itself"
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $ns apply -f examples/environments.yaml"
  example environments.yaml | kubectl -n "$ns" apply -f -
  show_await "every Environment in $ns to be Ready" \
    kubectl -n "$ns" wait --for=condition=Ready environment --all --timeout="$STORY_WAIT"
  show_await "the Application shop to be Ready once its Environments exist" \
    kubectl -n "$ns" wait --for=condition=Ready application/shop --timeout="$STORY_WAIT"
  show kubectl -n "$ns" get environments
  show kubectl -n "$ns" get applications

  tell_builds
  if [ "${STORY_BUILDS:-1}" != 0 ]; then
    tell_rollouts
    tell_promotion
  fi

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
  echo "Its administrator lets Ferry write workloads there, and lets $ns deploy there:"
  printf '\033[2m$ %s\033[0m\n' "kubectl -n $STORY_TARGET_NS create rolebinding ferry-deployer --clusterrole=ferry-deployer --serviceaccount=ferry-system:ferry"
  kubectl -n "$STORY_TARGET_NS" create rolebinding ferry-deployer --clusterrole=ferry-deployer \
    --serviceaccount=ferry-system:ferry --dry-run=client -o yaml | kubectl apply -f - > /dev/null
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
