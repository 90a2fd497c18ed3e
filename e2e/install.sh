#!/usr/bin/env bash
# End to end: Ferry on the real single-node cluster, installed both ways a user installs it.
#
#   e2e/install.sh            # on the cluster from `make cluster-up` (brought up if needed)
#
# Builds the static ferry binary (x86_64-unknown-linux-musl), wraps it in an image pushed to the
# cluster's registry, installs CRDs + RBAC + Deployment with one `kubectl apply`, then checks:
#   1. the controller becomes Ready (its /readyz probe passes once its caches synced, which
#      needs every list/watch the ClusterRole grants) and runs non-root, read-only, and the
#      approval policy (ferry-approve) type-checks against the Application schema;
#   2. an Application applied before its Environments is Stalled, then Ready once they exist
#      (its namespace granted to Ferry with the documented `kubectl create rolebinding`), and
#      its commit (examples/shop-app on the cluster's git server) becomes a Release;
#   3. an Environment aimed at another namespace waits for that namespace's consent;
#   4. /metrics answers through the API server's pod proxy;
#   5. deleting the pod (SIGTERM) shuts the controller down cleanly and a new one takes over;
#   6. builds (tests/e2e/builds.rs, in Rust): pushed commits become BuildJobs, images and
#      Releases, failures are reported, webhooks trigger builds (FERRY_E2E_SKIP_BUILDS=1 skips
#      them);
#   6b. rollouts (tests/e2e/rollouts.rs, in Rust): hand-made Releases of the test server roll out, good ones
#      become Healthy, failing ones (never ready, crash, pull error, HTTP 500, slow) are rolled
#      back, no request fails through a failed rollout (FERRY_E2E_SKIP_ROLLOUTS=1 skips them);
#   6c. promotion (tests/e2e/promotion.rs, in Rust): pushed commits flow dev → staging → prod,
#      prod waits for an approval (a pin, refused to an editor who may not approve), bad and
#      unverifiable releases stop where they fail, a pin of an older release rolls prod back
#      (FERRY_E2E_SKIP_PROMOTION=1 skips them).
#   6d. attacks (tests/e2e/attacks.rs): a team member with edit rights but without approve tries
#      every door to a Manual environment; each is refused at the API server, prod's Deployment
#      stays as it was, an approver is admitted (FERRY_E2E_SKIP_ATTACKS=1 skips them).
#   6e. chaos (tests/e2e/chaos.rs): the pipeline runs through FERRY_CHAOS_FAULTS faults (5
#      here; `make test-chaos` runs the long form), then its invariants are checked
#      (FERRY_E2E_SKIP_CHAOS=1 skips it).
# Then it removes that install and installs the chart with `helm install`:
#   7. the release becomes Ready and reconciles an Application in its tenant namespace, and
#      in a namespace not granted to it the Application is Stalled with SecretsNotGranted;
#   8. `helm uninstall` removes everything of the release, cluster-scoped objects included.
# The two installs run one after the other, never side by side: both controllers watch every
# namespace (each would hold the Lease of its own namespace and both would reconcile), and the
# CRDs are cluster-scoped and shared. The release has its own name and namespace (ferry-helm)
# all the same, so the chart is shown not to lean on the manifest's names.
# Leaves the cluster up; `make cluster-down` removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/cluster/lib.sh"
source "$here/lib/ferry.sh"

SYSTEM=ferry-system
TEAM=ferry-e2e-team
TARGET=ferry-e2e-target
# The helm release and its namespace, and the tenant namespace the release is given.
RELEASE=ferry-helm
HELM_TEAM=ferry-e2e-helm-team
HELM_UNGRANTED=ferry-e2e-helm-ungranted
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; jobs -p | xargs -r kill 2>/dev/null || true' EXIT

diagnose() {
  echo "---- diagnostics"
  kc -n "$SYSTEM" get all -o wide || true
  kc -n "$SYSTEM" describe pods || true
  kc -n "$SYSTEM" logs deployment/ferry --tail=50 || true
  kc -n "$TEAM" get applications,environments -o yaml || true
  kc -n "$RELEASE" get all -o wide || true
  kc -n "$RELEASE" logs "deployment/$RELEASE" --tail=50 || true
  kc -n "$HELM_TEAM" get applications,environments -o yaml || true
  kc get events.v1.events.k8s.io -A --sort-by=.metadata.creationTimestamp | tail -n 30 || true
  echo "---- the cluster is left up; 'make cluster-down' removes it"
}

install_with_one_apply() {
  # A release left by an earlier run on a kept cluster would reconcile alongside.
  uninstall_ferry_helm "$RELEASE" "$RELEASE"
  install_ferry "$IMAGE"
  ready_line "$SYSTEM" ferry
}

# The API server type-checks the approval policy's expressions against the Application schema
# (kube-controller-manager writes the result to its status): a warning there is a policy that
# cannot work.
approval_policy_type_checks() {
  kc wait --for=jsonpath='{.status.observedGeneration}'="$(kc get validatingadmissionpolicy ferry-approve \
    -o jsonpath='{.metadata.generation}')" validatingadmissionpolicy/ferry-approve --timeout=60s
  local warnings
  warnings=$(kc get validatingadmissionpolicy ferry-approve -o jsonpath='{.status.typeChecking.expressionWarnings}')
  echo "type-checking warnings: ${warnings:-none}"
  [ -z "$warnings" ]
}

runs_unprivileged() {
  local pod; pod=$(kc -n "$SYSTEM" get pods -l app.kubernetes.io/name=ferry -o jsonpath='{.items[0].metadata.name}')
  local uid ro escalation
  uid=$(kc -n "$SYSTEM" get pod "$pod" -o jsonpath='{.spec.securityContext.runAsUser}')
  ro=$(kc -n "$SYSTEM" get pod "$pod" -o jsonpath='{.spec.containers[0].securityContext.readOnlyRootFilesystem}')
  escalation=$(kc -n "$SYSTEM" get pod "$pod" -o jsonpath='{.spec.containers[0].securityContext.allowPrivilegeEscalation}')
  echo "pod $pod: runAsUser=$uid readOnlyRootFilesystem=$ro allowPrivilegeEscalation=$escalation"
  [ "$uid" = 65532 ] && [ "$ro" = true ] && [ "$escalation" = false ]
  # The namespace enforces the restricted Pod Security Standard, so the API server admitted
  # the pod only because it complies.
  [ "$(kc get namespace "$SYSTEM" -o jsonpath='{.metadata.labels.pod-security\.kubernetes\.io/enforce}')" = restricted ]
}

fresh_namespaces() {
  kc delete namespace "$TEAM" "$TARGET" --ignore-not-found --wait --timeout=120s
  kc create namespace "$TEAM"
  # Ferry reads Secrets and writes workloads only where it is granted; the README's two
  # commands grant it.
  grant_tenant "$TEAM"
  grant_deployer "$TEAM"
}

application_waits_for_environments() {
  push_example_app shop > /dev/null
  example shop.yaml | kc -n "$TEAM" apply -f -
  kc -n "$TEAM" wait --for=jsonpath='{.status.conditions[?(@.type=="Stalled")].reason}'=EnvironmentNotFound \
    application/shop --timeout=60s
  example environments.yaml | kc -n "$TEAM" apply -f -
  kc -n "$TEAM" wait --for=condition=Ready environment --all --timeout=60s
  kc -n "$TEAM" wait --for=condition=Ready application/shop --timeout=60s
  kc -n "$TEAM" get applications,environments
}

# The example's commit is built in a pod on the node and becomes a Release whose image the
# registry has; the builds scenarios (tests/e2e/builds.rs) go through the rest.
the_commit_becomes_a_release() {
  local SHOP_COMMIT
  SHOP_COMMIT=$(git ls-remote "$GIT_URL/shop.git" refs/heads/main | cut -f1)
  kc -n "$TEAM" wait --for=jsonpath='{.status.latestRelease}'=shop-0.0.0-"${SHOP_COMMIT:0:7}" \
    application/shop --timeout=240s
  local release=shop-0.0.0-${SHOP_COMMIT:0:7} image digest repository
  kc -n "$TEAM" get buildjobs,releases
  image=$(kc -n "$TEAM" get release "$release" -o jsonpath='{.spec.image}')
  repository=${image%@*}; digest=${image#*@}
  echo "release $release: image $image"
  [ "$(kc -n "$TEAM" get release "$release" -o jsonpath='{.spec.commit}')" = "$SHOP_COMMIT" ]
  curl -fsS -o /dev/null -I -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://${repository%%/*}/v2/${repository#*/}/manifests/$digest"
  echo "the registry has $digest"
}

# The example's Release runs in dev (the first stage) as a Deployment and a Service and is
# judged healthy; the rollout scenarios (tests/e2e/rollouts.rs) go through the rest.
the_release_runs_in_dev() {
  local release
  release=$(kc -n "$TEAM" get application shop -o jsonpath='{.status.latestRelease}')
  kc -n "$TEAM" wait --for=jsonpath='{.status.environments[?(@.name=="dev")].phase}'=Healthy \
    application/shop --timeout=180s
  kc -n "$TEAM" get applications,deployments,services,pods -l 'ferry.dev/environment=dev' || true
  kc -n "$TEAM" get applications
  [ "$(kc -n "$TEAM" get application shop -o jsonpath='{.status.environments[?(@.name=="dev")].current}')" = "$release" ]
  [ "$(kc -n "$TEAM" get deployment shop-dev -o jsonpath='{.status.readyReplicas}')" = 1 ]
  local ip; ip=$(kc -n "$TEAM" get service shop-dev -o jsonpath='{.spec.clusterIP}')
  in_ns curl -fsS --max-time 5 "http://$ip:8080/" | head -n 3
  echo "$release is Healthy in dev and answers through Service shop-dev ($ip)"
}

environment_waits_for_consent() {
  kc create namespace "$TARGET" --dry-run=client -o yaml | kc apply -f -
  kc -n "$TEAM" apply -f - <<YAML
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: prod-isolated}
spec: {targetNamespace: $TARGET}
YAML
  kc -n "$TEAM" wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=TargetNamespaceNotConsenting \
    environment/prod-isolated --timeout=60s
  kc annotate namespace "$TARGET" --overwrite "ferry.dev/allow-deploy-from=$TEAM"
  # Consent says who may deploy there; Ferry may write there only once the namespace binds
  # ferry-deployer (asked again every 30 s: RoleBindings are not watched).
  kc -n "$TEAM" wait --for=jsonpath='{.status.conditions[?(@.type=="Ready")].reason}'=DeploymentNotGranted \
    environment/prod-isolated --timeout=60s
  kc -n "$TEAM" get environment prod-isolated -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}{"\n"}'
  grant_deployer "$TARGET"
  kc -n "$TEAM" wait --for=condition=Ready environment/prod-isolated --timeout=60s
}

metrics_served() {
  local pod; pod=$(kc -n "$SYSTEM" get pods -l app.kubernetes.io/name=ferry -o jsonpath='{.items[0].metadata.name}')
  kc get --raw "/api/v1/namespaces/$SYSTEM/pods/$pod:8080/proxy/metrics" > "$tmp/metrics"
  grep 'ferry_reconciles_total{kind="Application"}' "$tmp/metrics"
  grep -q 'ferry_reconcile_duration_seconds_bucket' "$tmp/metrics"
}

graceful_restart() {
  local pod; pod=$(kc -n "$SYSTEM" get pods -l app.kubernetes.io/name=ferry -o jsonpath='{.items[0].metadata.name}')
  kc -n "$SYSTEM" logs -f "$pod" > "$tmp/old.log" 2>&1 &
  local follower=$!
  # `logs -f` prints the log from its start once attached; wait for that before the pod goes.
  local deadline=$((SECONDS + 30))
  until [ -s "$tmp/old.log" ]; do
    [ $SECONDS -lt $deadline ] || { echo "the log stream never attached"; exit 1; }
    sleep 0.2
  done
  kc -n "$SYSTEM" delete pod "$pod" --wait --timeout=60s
  wait "$follower" || true
  grep -q '"shutting down"' "$tmp/old.log" || { tail -n 5 "$tmp/old.log"; exit 1; }
  echo "old pod logged: $(grep -o '"message":"shutting down"' "$tmp/old.log")"
  kc -n "$SYSTEM" rollout status deployment/ferry --timeout=120s
  # The new controller finds everything as it was, and writes nothing new about it.
  kc -n "$TEAM" wait --for=condition=Ready application/shop --timeout=60s
}

remove_apply_install() {
  kc delete namespace "$TEAM" "$TARGET" --ignore-not-found --wait --timeout=120s
  # Not crds.yaml: the CRDs stay for the helm release (which would install the same ones).
  kc delete -f "$root/manifests/ferry.yaml" --ignore-not-found --wait --timeout=120s
  local role
  for role in ferry ferry-tenant ferry-deployer ferry-approver; do
    if kc get clusterrole "$role" > /dev/null 2>&1; then echo "ClusterRole $role is left"; exit 1; fi
  done
  if kc get validatingadmissionpolicy ferry-approve > /dev/null 2>&1; then echo "the approval policy is left"; exit 1; fi
}

install_with_helm() {
  kc delete namespace "$HELM_TEAM" --ignore-not-found --wait --timeout=120s
  kc create namespace "$HELM_TEAM"
  install_ferry_helm "$IMAGE" "$RELEASE" "$RELEASE" --set "tenantNamespaces={$HELM_TEAM}"
  ready_line "$RELEASE" "$RELEASE"
}

helm_release_reconciles() {
  { example shop.yaml; echo ---; example environments.yaml; } | kc -n "$HELM_TEAM" apply -f -
  kc -n "$HELM_TEAM" wait --for=condition=Ready environment --all --timeout=60s
  kc -n "$HELM_TEAM" wait --for=condition=Ready application/shop --timeout=60s
  kc -n "$HELM_TEAM" get applications
}

helm_release_needs_a_grant() {
  kc delete namespace "$HELM_UNGRANTED" --ignore-not-found --wait --timeout=120s
  kc create namespace "$HELM_UNGRANTED"
  { example shop.yaml; echo ---; example environments.yaml; } | kc -n "$HELM_UNGRANTED" apply -f -
  kc -n "$HELM_UNGRANTED" wait --for=jsonpath='{.status.conditions[?(@.type=="Stalled")].reason}'=SecretsNotGranted \
    application/shop --timeout=60s
  local message
  message=$(kc -n "$HELM_UNGRANTED" get application shop -o jsonpath='{.status.conditions[?(@.type=="Stalled")].message}')
  echo "$message"
  # The chart tells the controller its ServiceAccount, so the command names the release's.
  grep -q -- "--serviceaccount=$RELEASE:$RELEASE" <<< "$message"
  kc delete namespace "$HELM_UNGRANTED" --wait --timeout=120s
}

uninstall_with_helm() {
  # Applications first, while Ferry runs: their finalizer deletes their workloads in other
  # namespaces, and only a running Ferry removes it (the README says so for users too).
  kc delete namespace "$HELM_TEAM" --wait --timeout=120s
  uninstall_ferry_helm "$RELEASE" "$RELEASE"
  local left
  left=$(kc get clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings \
    -l "app.kubernetes.io/instance=$RELEASE" -o name)
  left+=$(kc get rolebindings,roles,serviceaccounts,deployments -A -l "app.kubernetes.io/instance=$RELEASE" -o name)
  [ -z "$left" ] || { echo "helm uninstall left: $left"; exit 1; }
  echo "nothing labelled app.kubernetes.io/instance=$RELEASE is left"
  kc delete namespace "$RELEASE" --wait --timeout=120s
}

main() {
  "$here/cluster/up.sh" > /dev/null
  echo "---- building the static ferry binary and its image"
  IMAGE=$(ferry_image)
  echo "image: $IMAGE"
  step "Ferry installs with one kubectl apply and becomes Ready" install_with_one_apply
  step "the approval policy type-checks against the Application schema" approval_policy_type_checks
  step "the controller runs non-root with a read-only root filesystem" runs_unprivileged
  step "namespaces $TEAM and $TARGET are fresh" fresh_namespaces
  step "an Application applied before its Environments is Stalled, then Ready" application_waits_for_environments
  step "the example's commit is built and becomes a Release" the_commit_becomes_a_release
  step "the example's Release runs in dev and proves healthy" the_release_runs_in_dev
  step "an Environment aimed at another namespace waits for its consent and Ferry's grant" environment_waits_for_consent
  step "the controller serves Prometheus metrics" metrics_served
  step "deleting the pod shuts the controller down cleanly; a new one takes over" graceful_restart
  if [ "${FERRY_E2E_SKIP_BUILDS:-0}" = 1 ]; then
    echo "FERRY_E2E_SKIP_BUILDS=1: the build scenarios (tests/e2e/builds.rs) are skipped"
  else
    step "pushed commits become verified images and Releases (tests/e2e/builds.rs)" e2e_scenarios builds
  fi
  if [ "${FERRY_E2E_SKIP_ROLLOUTS:-0}" = 1 ]; then
    echo "FERRY_E2E_SKIP_ROLLOUTS=1: the rollout scenarios (tests/e2e/rollouts.rs) are skipped"
  else
    step "Releases roll out, failing ones are rolled back without a failed request (tests/e2e/rollouts.rs)" e2e_scenarios rollouts
  fi
  if [ "${FERRY_E2E_SKIP_PROMOTION:-0}" = 1 ]; then
    echo "FERRY_E2E_SKIP_PROMOTION=1: the promotion scenarios (tests/e2e/promotion.rs) are skipped"
  else
    step "commits flow dev → staging → prod with approval, verification and rollback (tests/e2e/promotion.rs)" e2e_scenarios promotion
  fi
  if [ "${FERRY_E2E_SKIP_ATTACKS:-0}" = 1 ]; then
    echo "FERRY_E2E_SKIP_ATTACKS=1: the attack scenarios (tests/e2e/attacks.rs) are skipped"
  else
    step "an editor without approve cannot change what runs in a Manual environment (tests/e2e/attacks.rs)" e2e_scenarios attacks
  fi
  if [ "${FERRY_E2E_SKIP_CHAOS:-0}" = 1 ]; then
    echo "FERRY_E2E_SKIP_CHAOS=1: the resilience scenario (tests/e2e/chaos.rs) is skipped"
  else
    step "the pipeline keeps its invariants through ${FERRY_CHAOS_FAULTS:-5} faults (tests/e2e/chaos.rs)" e2e_scenarios chaos
  fi
  step "kubectl delete -f manifests/ferry.yaml removes the apply install" remove_apply_install
  step "Ferry installs with helm install (release $RELEASE) and becomes Ready" install_with_helm
  step "the helm release reconciles an Application in its tenant namespace" helm_release_reconciles
  step "outside its tenant namespaces the helm release reads no Secret (SecretsNotGranted)" helm_release_needs_a_grant
  step "helm uninstall removes the release, cluster-scoped objects included" uninstall_with_helm
  echo "ALL PASSED"
}

main "$@"
