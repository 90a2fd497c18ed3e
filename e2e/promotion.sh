#!/usr/bin/env bash
# End to end: Ferry's promotion on the real cluster, driven only as a GitOps repository and a
# developer drive it: commits pushed to the cluster's git server (whose push webhook makes the
# build start at once) and `kubectl apply` of Environments and the Application, approvals and
# rollbacks being pins in the Application. Assumes Ferry is installed in ferry-system by
# `install_ferry` (e2e/lib/ferry.sh); e2e/install.sh runs it after the rollout scenarios
# (FERRY_E2E_SKIP_PROMOTION=1 skips it there).
#
#   e2e/promotion.sh                          # every scenario
#   e2e/promotion.sh bad-commit superseded    # only these
#   e2e/promotion.sh --one pipeline           # one, in the foreground, its log on the terminal
#
# Each scenario has its own namespace (ferry-e2e-promo-<scenario>, granted to Ferry with
# `grant_tenant`, enforcing the restricted Pod Security Standard, which the verification test
# pod must meet too), its own git repository (named with this run's id) and the example
# pipeline's shape in it: Environments dev (the first stage) → staging (Automatic, BlueGreen,
# verified by a test pod that fetches $SERVICE_URL/verify.html) → prod (Manual, BlueGreen,
# verified by an HTTP GET of /verify.html), all three without targetNamespace, so the workloads
# web-dev, web-staging and web-prod share the scenario's namespace. Deadlines are short
# (progressDeadline 20s, stabilizationWindow 3s). The Application `web` is the busybox httpd
# app of e2e/testdata/app (one replica, ready when / answers), built from the pushed commits,
# polled every 10m so only the webhook makes builds come quickly. The commits come in three
# kinds:
#   good          www/index.html and www/verify.html
#   bad           no www/index.html: / answers 404, the pod never becomes ready, rolled back
#                 in dev at the progress deadline
#   unverifiable  www/index.html, no www/verify.html: Healthy in dev, fails staging's
#                 verification
#
#   pipeline            a good commit: Healthy in dev, in staging by itself (verified by the
#                       test pod), prod AwaitingApproval with it as candidate (condition,
#                       summary) and stays so; pat, who may edit the Application but not
#                       approve, pins it: refused by the API server (ferry-approve), nothing
#                       changes; rita (ferry-approver) pins it with a reason: it runs in
#                       prod, verified (HTTP GET), the history records an Approval with the
#                       reason and who wrote it; its Release lists dev, staging and prod
#                       Deployed and verified; the Events say so. Measures commit pushed →
#                       Healthy in dev, and → AwaitingApproval in prod
#   bad-commit          a bad commit after a good one: rolled back in dev, Rejected in its
#                       Release's status, never named by staging or prod; the next good commit
#                       reaches staging
#   verification-fails  an unverifiable commit: Healthy in dev, fails staging's verification
#                       (VerificationFailed, the test pod's log tail in the status), staging
#                       rolls back, its Release says Rejected in staging; never prod's candidate
#   manual-rollback     two releases approved into prod in turn; a pin of the older one with
#                       reason "INC-77 rollback": it runs, verified, history ManualRollback with
#                       the reason and an actor; the pin removed: prod follows staging again,
#                       AwaitingApproval with the newer release, and does not roll it out
#   superseded          two commits pushed while dev still rolls out the one before: that
#                       rollout finishes (no half rollouts), then the newest wins, the skipped
#                       one is recorded Superseded; in prod a candidate replaced by a newer one
#                       before approval is recorded Superseded
#
# The scenarios run side by side, except pipeline, which measures times and runs alone after
# them. Prints PASS/FAIL per scenario and its `measured:` lines; a failed scenario's log (with
# the Application's status, Environments, Releases, BuildJobs, workloads, pods, Events and the
# controller's log tail) is printed whole. Logs stay in $FERRY_E2E_PROMOTION_OUT (default
# /tmp/ferry-e2e-promotion-<run>). On success the scenarios' namespaces are deleted; on failure
# they are left for inspection.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # e2e/lib/ferry.sh reads it
root=$(cd "$here/.." && pwd)
source "$here/cluster/lib.sh"
source "$here/lib/ferry.sh"
source "$here/lib/scenarios.sh"

SYSTEM=ferry-system
NS_PREFIX=ferry-e2e-promo
# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
SUITE=promotion
RUN_ID=${FERRY_E2E_PROMOTION_RUN:-$(date +%s)}
OUT=${FERRY_E2E_PROMOTION_OUT:-/tmp/ferry-e2e-promotion-$RUN_ID}
APP=web
BUSYBOX="$REGISTRY/busybox:1.35"
PROGRESS_DEADLINE=20s
STABILIZATION_WINDOW=3s
# The build: the pushed www/ into the output directory (its contents land at the image's root).
# No tests: the bad commit must still become a Release, to be rejected by its rollout.
SCRIPT='cp -r www "$FERRY_OUTPUT_DIR"/'

# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
PARALLEL=(bad-commit verification-fails manual-rollback superseded)
# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
ALONE=(pipeline)
# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
declare -A DEADLINE=([pipeline]=300 [bad-commit]=360 [verification-fails]=360
  [manual-rollback]=420 [superseded]=420)

# --- helpers for one scenario (its namespace is $NS) ----------------------------------------

# To stderr too: a failure inside $(...) must not vanish into a variable.
fail() { echo "FAIL: $*" >&2; exit 1; }
# short RELEASE — the release's name without the "<application>-" prefix, as summaries show it.
short() { echo "${1#"$APP"-}"; }


# app_json — the Application, once per check (a check reads several fields of one snapshot).
app_json() { kn get application "$APP" -o json 2>/dev/null || echo '{}'; }
# state ENV [JQ] — the Application's status entry for ENV, through JQ (default: all of it).
state() {
  app_json | jq -c --arg e "$1" "(.status.environments // [])[] | select(.name == \$e) | ${2:-.}" 2>/dev/null || true
}
# field ENV JQ — one field of the entry, strings raw, nothing when null (false stays false).
field() { state "$1" "($2) | select(. != null)" | jq -r . 2>/dev/null || true; }
# release_env RELEASE ENV [JQ] — the Release's status entry for ENV, through JQ.
release_env() {
  kn get release "$1" -o json 2>/dev/null |
    jq -c --arg e "$2" "(.status.environments // [])[] | select(.name == \$e) | ${3:-.}" 2>/dev/null || true
}
release_field() { release_env "$1" "$2" "($3) | select(. != null)" | jq -r . 2>/dev/null || true; }
show_state() {
  echo "status of $1: $(state "$1" '{phase, current, previous, candidate, rejected,
    rollout: (.rollout | if . == null then null else {release, from, kind, reason, verdict,
      verification: (.verification | if . == null then null else del(.log) end)} end)}')"
}
show_history() { echo "history of $1: $(state "$1" '[.history[]? | {release, from, kind, outcome, reason, actor}]')"; }
summary() { jp "application/$APP" '{.status.summary}'; }

# is ENV PHASE RELEASE — 0 once ENV is PHASE with RELEASE current; 2 once ENV has rejected
# RELEASE (while waiting for it to be Healthy or Pinned there).
is() {
  local env=$1 want=$2 release=$3 entry
  entry=$(state "$env")
  [ "$(jq -r '.phase // ""' <<<"$entry")" = "$want" ] &&
    [ "$(jq -r '.current // ""' <<<"$entry")" = "$release" ] && return 0
  if [[ "$want" =~ ^(Healthy|Pinned)$ ]] && [ "$(jq --arg r "$release" 'any(.rejected[]?; . == $r)' <<<"$entry")" = true ]; then
    echo "$env rejected $release: $(jq -c '.rollout.cause // .rollout.verdict' <<<"$entry")"
    return 2
  fi
  return 1
}

# verified ENV RELEASE [PHASE] — 0 once ENV is PHASE (default Healthy; a pinned environment is
# Pinned) with RELEASE, its rollout judged healthy and its verification passed.
verified() {
  is "$1" "${3:-Healthy}" "$2" || return $?
  [ "$(field "$1" .rollout.release)" = "$2" ] && [ "$(field "$1" .rollout.verdict.healthy)" = true ] &&
    [ "$(field "$1" .rollout.verification.passed)" = true ]
}

# awaiting_approval RELEASE — 0 once prod is AwaitingApproval with RELEASE as its candidate and
# the condition AwaitingApproval=True.
awaiting_approval() {
  local entry
  entry=$(state prod)
  [ "$(jq -r '.phase // ""' <<<"$entry")" = AwaitingApproval ] &&
    [ "$(jq -r '.candidate // ""' <<<"$entry")" = "$1" ] &&
    [ "$(jq -r '[.conditions[]? | select(.type == "AwaitingApproval")][0].status // ""' <<<"$entry")" = True ]
}

# environments [DEV_WINDOW DEV_DEADLINE] — applies dev → staging (Automatic) → prod (Manual):
# the example pipeline's shape with short deadlines; staging's verification is a test pod,
# prod's an HTTP GET.
environments() {
  local dev_window=${1:-$STABILIZATION_WINDOW} dev_deadline=${2:-$PROGRESS_DEADLINE}
  kn apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: dev}
spec:
  health: {progressDeadline: $dev_deadline, stabilizationWindow: $dev_window}
---
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: staging}
spec:
  upstream: dev
  approval: Automatic
  strategy: {type: BlueGreen}
  health: {progressDeadline: $PROGRESS_DEADLINE, stabilizationWindow: $STABILIZATION_WINDOW}
  verification:
    image: $BUSYBOX
    command: [sh, -c, 'wget -q -O- "\$SERVICE_URL/verify.html"']
    timeout: 30s
---
apiVersion: ferry.dev/v1alpha1
kind: Environment
metadata: {name: prod}
spec:
  upstream: staging
  approval: Manual
  strategy: {type: BlueGreen}
  health: {progressDeadline: $PROGRESS_DEADLINE, stabilizationWindow: $STABILIZATION_WINDOW}
  rollback: {automatic: true}
  verification:
    httpGets: [{path: /verify.html}]
    timeout: 30s
EOF
  kn wait --for=condition=Ready environment/dev environment/staging environment/prod --timeout=60s >/dev/null \
    || fail "the Environments are not Ready: $(kn get environments -o json | jq -c '[.items[] | {name: .metadata.name, conditions: .status.conditions}]')"
  echo "applied Environments dev (progressDeadline $dev_deadline, stabilizationWindow $dev_window) → staging (Automatic, test pod) → prod (Manual, HTTP GET)"
}

# people — pat may edit Applications here; rita may too, and holds ferry-approver.
people() {
  kn apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: application-editor}
rules: [{apiGroups: [ferry.dev], resources: [applications], verbs: [get, list, watch, create, patch, update]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: application-editors}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: application-editor}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: pat}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: rita}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: approvers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ferry-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: rita}]
EOF
}

# application [PIN_RELEASE PIN_REASON] — applies Application web, with prod pinned to
# PIN_RELEASE if given (an approval or a rollback, as a GitOps repository would commit it); as
# the user $AS when set. Fails when the API server refuses the write (its words on stderr).
application() {
  local pin=${1:-} reason=${2:-}
  jq -n --arg app "$APP" --arg url "$GIT_URL/$REPO.git" --arg busybox "$BUSYBOX" \
    --arg script "$SCRIPT" --arg repository "$REGISTRY/$NS/$RUN_ID/$APP" \
    --arg pin "$pin" --arg reason "$reason" '{
      apiVersion: "ferry.dev/v1alpha1", kind: "Application", metadata: {name: $app},
      spec: {
        source: {url: $url, branch: "main", pollInterval: "10m", webhookSecret: "web-webhook"},
        build: {builderImage: $busybox, script: $script, baseImage: $busybox,
          entrypoint: ["httpd", "-f", "-p", "8080", "-h", "/www"]},
        image: {repository: $repository, insecure: true},
        run: {replicas: 1, ports: [{name: "http", port: 8080}],
          readinessProbe: {httpGet: {path: "/", port: "http"}, periodSeconds: 1, failureThreshold: 1}},
        environments: [{name: "dev"}, {name: "staging"},
          {name: "prod"} + if $pin == "" then {} else {pin: {release: $pin, reason: $reason}} end]
      }}' | kn apply ${AS:+--as="$AS"} -f - >/dev/null || return 1
  if [ -n "$pin" ]; then
    PINNED_AT=$(now)
    echo "applied Application $APP with prod pinned to $pin: \"$reason\""
  else
    echo "applied Application $APP without pins"
  fi
}

# variant KIND LABEL — the work tree's www/ as a KIND commit (good, bad, unverifiable) says it.
variant() {
  local www="$WORK/app/www"
  rm -rf "$www"; mkdir -p "$www"
  case $1 in
    good | unverifiable) printf '<!doctype html>\n<title>ferry e2e app</title>\n<p>hello from the ferry e2e app, %s</p>\n' "$2" >"$www/index.html" ;;
    bad) ;;
    *) fail "variant: unknown kind $1" ;;
  esac
  case $1 in
    good | bad) printf 'verified: %s\n' "$2" >"$www/verify.html" ;;
  esac
  echo "$1 commit $2 of scenario $SCENARIO" >"$WORK/app/README"
}

# push KIND LABEL — commits a KIND variant and pushes it; sets REL (the Release it will make),
# SHA and PUSHED_AT (just before the push: the webhook may start the build while it returns).
push() {
  variant "$1" "$2"
  git -C "$WORK/app" add -A
  git -C "$WORK/app" -c user.name=e2e -c user.email=e2e@ferry.invalid commit --quiet -m "$1: $2"
  SHA=$(git -C "$WORK/app" rev-parse HEAD)
  REL="$APP-0.0.0-${SHA:0:7}"
  PUSHED_AT=$(now)
  git -C "$WORK/app" push --quiet "$GIT_URL/$REPO.git" main
  echo "pushed the $1 commit ${SHA:0:7} ($2) to $GIT_URL/$REPO.git: Release $REL to come"
}

# built RELEASE SHA — 0 once the Release exists; 2 once the commit's BuildJob failed.
built() {
  has release "$1" && return 0
  if [ "$(jp "buildjob/$APP-${2:0:7}" '{.status.phase}')" = Failed ]; then
    echo "BuildJob $APP-${2:0:7} failed: $(jp "buildjob/$APP-${2:0:7}" '{.status.failure}')"
    return 2
  fi
  return 1
}
await_release() { await 240 "Release $1 to be built" built "$1" "$2"; }

# setup [DEV_WINDOW DEV_DEADLINE] — Environments, the webhook Secret, an empty repository whose pushes are
# POSTed to Ferry's webhook, and the Application (whose branch does not exist yet: the first
# push makes it, and the webhook announces it).
setup() {
  environments "$@"
  REPO="e2e-promotion-$SCENARIO-$RUN_ID"
  local secret="e2e-hook-$RUN_ID-$SCENARIO" ip
  kn create secret generic web-webhook --from-literal=secret="$secret" >/dev/null
  ip=$(kc -n "$SYSTEM" get service ferry-webhook -o jsonpath='{.spec.clusterIP}') || fail "no Service ferry-webhook in $SYSTEM"
  "$here/cluster/git-webhook.sh" "$REPO" "http://$ip:9443/webhooks/$NS/$APP" "$secret"
  mkdir -p "$WORK/app"
  git -C "$WORK/app" init --quiet --initial-branch=main
  application
}

# approve RELEASE — prod must be waiting for RELEASE; pins it there with a change ticket.
approve() {
  POLL=0.5 await 120 "prod to be AwaitingApproval with $1 as candidate" awaiting_approval "$1"
  application "$1" "CHG-${1##*-} approved by the change board"
}

# no_mention ENV RELEASE — ENV's current, previous, candidate, rollout and history never name
# RELEASE.
no_mention() {
  local named
  named=$(state "$1" "[.current, .previous, .candidate, .rollout.release, .rollout.from, (.history[]? | .release, .from)] | any(. == \"$2\")")
  [ "$named" != true ] || fail "$1 names $2: $(state "$1" '{current, previous, candidate, rollout: .rollout.release, history: [.history[]? | {release, kind, outcome}]}')"
}

# history_entry ENV RELEASE KIND — the newest history entry of ENV recording KIND for RELEASE.
history_entry() { state "$1" "[.history[]? | select(.release == \"$2\" and .kind == \"$3\")][0] // empty"; }

# pin_recorded KIND RELEASE REASON — prod's history has a KIND of RELEASE with REASON, an actor
# and the outcome Succeeded; prints that entry.
pin_recorded() {
  local entry; entry=$(history_entry prod "$2" "$1")
  [ -n "$entry" ] || fail "prod's history has no $1 of $2"
  [ "$(jq -r .reason <<<"$entry")" = "$3" ] || fail "the $1's reason is not \"$3\": $entry"
  [ -n "$(jq -r '.actor // ""' <<<"$entry")" ] || fail "the $1 names no actor: $entry"
  [ "$(jq -r .outcome <<<"$entry")" = Succeeded ] || fail "the $1's outcome is not Succeeded: $entry"
  echo "$entry"
}

# events_include REASON... — the Application's Events carry each REASON.
events_include() {
  local reasons reason
  reasons=$(kn get events --field-selector "involvedObject.name=$APP,involvedObject.kind=Application" -o json |
    jq -r '[.items[].reason] | unique | join(" ")')
  echo "Event reasons on Application $APP: $reasons"
  for reason in "$@"; do
    [[ " $reasons " == *" $reason "* ]] || fail "no Event with reason $reason on Application $APP"
  done
}

# answers ENV PATH — the body of PATH through ENV's Service (from the node's network namespace).
answers() {
  local ip; ip=$(jp "service/$APP-$1" '{.spec.clusterIP}')
  [ -n "$ip" ] || fail "no Service $APP-$1"
  in_ns curl -fsS --max-time 3 "http://$ip:8080$2"
}

diagnostics() {
  echo "---- diagnostics for namespace $NS"
  kn get applications,environments,buildjobs,releases,deployments,services,pods -o wide 2>&1 || true
  echo "---- Application $APP status"
  kn get application "$APP" -o json 2>/dev/null | jq '.status | del(.environments[]?.rollout.verification.log) ' || true
  local env
  for env in dev staging prod; do
    echo "---- $env's verification log: $(field "$env" .rollout.verification.log | tail -n 5)"
  done
  echo "---- Releases' status"
  kn get releases -o json 2>/dev/null | jq -c '.items[] | {name: .metadata.name, summary: .status.summary, environments: .status.environments}' || true
  kn get buildjobs -o json 2>/dev/null | jq -c '.items[] | {name: .metadata.name, phase: .status.phase, failure: .status.failure}' || true
  kn get deployments -o json 2>/dev/null | jq -c '.items[] | {name: .metadata.name, replicas: .spec.replicas,
    image: .spec.template.spec.containers[0].image, status: .status | {readyReplicas, updatedReplicas, unavailableReplicas}}' || true
  kn get services -o json 2>/dev/null | jq -c '.items[] | {name: .metadata.name, selector: .spec.selector}' || true
  kn get events --sort-by=.lastTimestamp 2>&1 | tail -n 40 || true
  local pod
  for pod in $(kn get pods -o name 2>/dev/null); do
    echo "---- $pod"
    kn get "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.name}: ready {.ready}, restarts {.restartCount}, {.state}{"\n"}{end}' || true
    kn logs "$pod" --all-containers --tail=5 2>&1 || true
  done
  echo "---- the controller's last log lines"
  kc -n "$SYSTEM" logs deployment/ferry --tail=60 2>&1 || true
  echo "---- the git server's lines about this scenario's repository"
  grep -F "e2e-promotion-$SCENARIO-" "$LOGS/gitserver.log" | tail -n 10 || true
}

# --- the scenarios -----------------------------------------------------------------------------

scenario_pipeline() {
  setup
  push good v1
  local r1=$REL t0=$PUSHED_AT dev_at prod_at
  # Polled closely: these are the measured figures.
  POLL=0.2 await 120 "dev to be Healthy with $r1" is dev Healthy "$r1"
  dev_at=$(since "$t0")
  echo "measured: commit pushed → Healthy in dev = $dev_at s"
  awk -v s="$dev_at" 'BEGIN {exit !(s < 20)}' \
    || echo "note: issue 13 targets commit → Healthy in dev under 20 s; it took $dev_at s"
  POLL=0.2 await 120 "staging to be Healthy with $r1, verified" verified staging "$r1"
  POLL=0.2 await 120 "prod to be AwaitingApproval with $r1 as candidate" awaiting_approval "$r1"
  prod_at=$(since "$t0")
  echo "measured: commit pushed → AwaitingApproval in prod = $prod_at s"
  show_state dev; show_state staging; show_state prod
  [ "$(field dev .rollout.kind)" = Rollout ] || fail "dev's rollout is a '$(field dev .rollout.kind)', not a Rollout"
  [ "$(state staging '[.history[]? | select(.release == "'"$r1"'")][0].kind')" = '"Promotion"' ] \
    || fail "staging's history does not record a Promotion of $r1: $(state staging '[.history[]? | {release, kind}]')"
  echo "staging's verification: $(state staging '.rollout.verification | del(.log)')"
  local condition; condition=$(state prod '[.conditions[]? | select(.type == "AwaitingApproval")][0]')
  echo "prod's AwaitingApproval condition: $condition"
  [ "$(jq -r .reason <<<"$condition")" = AwaitingApproval ] || fail "the condition's reason is not AwaitingApproval"
  local s; s=$(summary)
  echo "Application summary: $s"
  [[ "$s" =~ (^|[ ,])prod=[^,]*AwaitingApproval\($(short "$r1")\) ]] \
    || fail "the summary does not show prod AwaitingApproval($(short "$r1"))"
  [ "$(release_field "$r1" staging .state)" = Deployed ] || fail "Release $r1 is not Deployed in staging: $(release_env "$r1" staging)"
  [ "$(release_field "$r1" prod .state)" = AwaitingApproval ] || fail "Release $r1 is not AwaitingApproval in prod: $(release_env "$r1" prod)"
  echo "Release $r1 summary: $(jp "release/$r1" '{.status.summary}')"

  # It stays so: a Manual environment does not take the candidate by itself.
  sleep 10
  awaiting_approval "$r1" || fail "10 s later prod is no longer AwaitingApproval with $r1: $(state prod '{phase, current, candidate}')"
  [ -z "$(field prod .current)" ] || fail "prod runs $(field prod .current) without an approval"
  local prod_workloads; prod_workloads=$(kn get deployments -l ferry.dev/environment=prod -o name)
  [ -z "$prod_workloads" ] || fail "prod has workloads without an approval: $prod_workloads"
  echo "10 s later prod still awaits approval of $r1 and runs nothing"

  # Who may approve: pat may edit the Application but not approve, so the API server refuses
  # pat's pin (the ferry-approve policy of manifests/ferry.yaml) and prod stays as it was;
  # rita holds the ferry-approver ClusterRole in the namespace.
  local reason="CHG-1234 approved by the change board" refusal
  people
  if refusal=$(AS=pat application "$r1" "$reason" 2>&1); then
    fail "pat, who may not approve, pinned prod: $refusal"
  fi
  grep -q "pat may not change the pin of prod:" <<<"$refusal" || fail "pat's pin failed otherwise: $refusal"
  echo "pat's pin refused by the API server: ${refusal##*denied request: }"
  [ -z "$(jp "application/$APP" '{.spec.environments[?(@.name=="prod")].pin}')" ] || fail "pat's refused pin is in the Application"

  # The approval: a pin of the candidate, with a reason, as a GitOps commit would apply it.
  AS=rita application "$r1" "$reason"
  POLL=0.5 await 120 "prod to be Pinned to $r1, healthy and verified" verified prod "$r1" Pinned
  echo "measured: approval applied → Healthy and verified in prod = $(since "$PINNED_AT") s"
  show_state prod; show_history prod
  local entry; entry=$(pin_recorded Approval "$r1" "$reason")
  echo "prod's history entry: $entry"
  grep -q "verified: v1" <<<"$(answers prod /verify.html)" || fail "prod's Service does not serve v1's verify.html"
  echo "Service $APP-prod serves: $(answers prod /index.html | grep -o 'hello[^<]*')"

  # Where the Release runs, at a glance.
  local env state
  for env in dev staging prod; do
    state=$(release_field "$r1" "$env" .state)
    [ "$state" = Deployed ] || fail "Release $r1 is '$state' in $env, not Deployed: $(release_env "$r1" "$env")"
  done
  for env in staging prod; do
    [ "$(release_field "$r1" "$env" .verification.passed)" = true ] \
      || fail "Release $r1's verification in $env did not pass: $(release_env "$r1" "$env")"
  done
  echo "Release $r1: $(jp "release/$r1" '{.status.summary}'); $(kn get release "$r1" -o json | jq -c '.status.environments')"
  [ "$(jp "release/$r1" '{.status.summary}')" = "dev=Deployed staging=Deployed prod=Deployed" ] \
    || fail "Release $r1's summary is not dev=Deployed staging=Deployed prod=Deployed"
  kn get applications
  kn get releases
  events_include RolloutStarted RolloutSucceeded Promoted AwaitingApproval Approved Verifying VerificationPassed

  # The controller's metrics count what just happened (the other scenarios ran before, so at
  # least this one's).
  local metrics
  metrics=$(metrics) || fail "cannot read the controller's /metrics"
  at_least_one "$metrics" ferry_promotions_total 'environment="staging",kind="Promotion"'
  at_least_one "$metrics" ferry_promotions_total 'environment="prod",kind="Approval"'
  at_least_one "$metrics" ferry_release_to_healthy_seconds_count 'environment="dev"'
  at_least_one "$metrics" ferry_lead_time_seconds_count 'environment="prod"'
  echo "measured: mean lead time, commit seen → healthy and verified in prod (ferry_lead_time_seconds) = $(mean "$metrics" ferry_lead_time_seconds 'environment="prod"') s"
}

# at_least_one METRICS NAME LABELS — fails unless the series NAME{LABELS} is at least 1.
at_least_one() {
  local value
  value=$(awk -v n="$2{$3}" '$1 == n {print $2}' <<<"$1")
  awk -v v="${value:-0}" 'BEGIN {exit !(v >= 1)}' \
    || fail "metric $2{$3} is ${value:-absent}, expected at least 1"
  echo "metric $2{$3} = $value"
}

# mean METRICS HISTOGRAM LABELS — its sum over its count.
mean() {
  awk -v s="$2_sum{$3}" -v c="$2_count{$3}" '$1 == s {sum = $2} $1 == c {n = $2}
    END {if (n > 0) printf "%.1f", sum / n; else print "none"}' <<<"$1"
}

scenario_bad_commit() {
  setup
  push good v1
  local r1=$REL
  await 180 "staging to be Healthy with $r1, verified" verified staging "$r1"
  push bad v2
  local r2=$REL sha2=$SHA
  await_release "$r2" "$sha2"
  # Rolled back in dev at the progress deadline; staging never hears of it.
  rolled_back_in_dev() {
    no_mention staging "$r2"
    is dev RolledBack "$r1"
  }
  await 120 "dev to be RolledBack to $r1" rolled_back_in_dev
  show_state dev; show_history dev
  [ "$(state dev "any(.rejected[]?; . == \"$r2\")")" = true ] || fail "dev's rejected does not name $r2: $(state dev .rejected)"
  local state; state=$(release_field "$r2" dev .state)
  echo "Release $r2 in dev: $(release_env "$r2" dev)"
  [ "$state" = Rejected ] || fail "Release $r2 is '$state' in dev, not Rejected"
  [ -n "$(release_field "$r2" dev .reason)$(release_field "$r2" dev .verdict)" ] || fail "Release $r2's status in dev says no reason"
  [ -z "$(release_env "$r2" staging)" ] || [ "$(release_field "$r2" staging .state)" != Deployed ] \
    || fail "Release $r2 says it is Deployed in staging"
  # The next good commit flows on.
  push good v3
  local r3=$REL
  await 180 "staging to be Healthy with $r3, verified" verified staging "$r3"
  no_mention staging "$r2"
  no_mention prod "$r2"
  show_history staging
  POLL=0.5 await 60 "prod to be AwaitingApproval with $r3 as candidate" awaiting_approval "$r3"
  echo "staging never named $r2; it runs $r3; prod awaits approval of $r3"
  events_include RolledBack Promoted
}

scenario_verification_fails() {
  setup
  push good v1
  local r1=$REL
  await 180 "staging to be Healthy with $r1, verified" verified staging "$r1"
  push unverifiable v2
  local r2=$REL
  await 120 "dev to be Healthy with $r2" is dev Healthy "$r2"
  # staging's verification fails: keep its log, seen while the failed rollout is the current
  # one (a rollback then becomes the current rollout).
  local log="$WORK/verification.log"
  : >"$log"
  staging_rolled_back() {
    local entry; entry=$(state staging)
    if [ "$(jq -r '.rollout.release // ""' <<<"$entry")" = "$r2" ] &&
      [ "$(jq -r '.rollout.verification.passed // ""' <<<"$entry")" = false ]; then
      jq -r '.rollout.verification.log // ""' <<<"$entry" >"$log"
    fi
    no_mention prod "$r2"
    [ "$(jq -r '.phase // ""' <<<"$entry")" = RolledBack ] && [ "$(jq -r '.current // ""' <<<"$entry")" = "$r1" ]
  }
  POLL=0.5 await 120 "staging to fail $r2's verification and roll back to $r1" staging_rolled_back
  show_state staging; show_history staging
  local reason; reason=$(field staging '(.rollout.cause // .rollout.verdict).reason')
  [ "$reason" = VerificationFailed ] || fail "staging's failed verdict has reason '$reason', not VerificationFailed"
  [ "$(state staging "any(.rejected[]?; . == \"$r2\")")" = true ] || fail "staging's rejected does not name $r2"
  # The log tail of the test pod: kept by the failed verdict, which is the cause of the
  # rollback (or in the failed rollout's verification, if it was seen while current).
  [ -s "$log" ] || field staging '(.rollout.cause.log // .rollout.verification.log)' >"$log"
  echo "the test pod's log tail: $(tr '\n' '|' <"$log")"
  grep -qiE '404|not found|server returned error' "$log" || fail "the verification log does not show the failed GET of verify.html"
  echo "Release $r2 in dev: $(release_env "$r2" dev); in staging: $(release_env "$r2" staging)"
  [ "$(release_field "$r2" dev .state)" = Deployed ] || fail "Release $r2 is not Deployed in dev"
  [ "$(release_field "$r2" staging .state)" = Rejected ] || fail "Release $r2 is not Rejected in staging"
  [ "$(release_field "$r2" staging .verification.passed)" = false ] || fail "Release $r2's verification in staging is not recorded as failed"
  [ -n "$(release_field "$r2" staging .verification.message)" ] || fail "Release $r2's failed verification in staging has no message"
  # Never prod's candidate: prod keeps waiting for $r1.
  sleep 5
  awaiting_approval "$r1" || fail "prod is not AwaitingApproval with $r1: $(state prod '{phase, current, candidate}')"
  no_mention prod "$r2"
  echo "prod still awaits approval of $r1 and never named $r2"
  events_include VerificationFailed VerificationPassed RolledBack
}

scenario_manual_rollback() {
  setup
  push good v1
  local r1=$REL
  approve "$r1"
  await 120 "prod to be Pinned to $r1, healthy and verified" verified prod "$r1" Pinned
  push good v2
  local r2=$REL
  await 180 "staging to be Healthy with $r2, verified" verified staging "$r2"
  # Pinned to $r1, prod takes nothing by itself; replacing the pin approves $r2.
  sleep 3
  echo "prod while pinned to $r1: $(state prod '{phase, current, candidate}')"
  [ "$(field prod .current)" = "$r1" ] || fail "prod runs $(field prod .current) while pinned to $r1"
  application "$r2" "CHG-2 approved by the change board"
  await 120 "prod to be Pinned to $r2, healthy and verified" verified prod "$r2" Pinned
  local kind; kind=$(state prod "[.history[]? | select(.release == \"$r2\")][0].kind" | jq -r .)
  echo "prod's history records the pin of $r2 as $kind"
  [ "$kind" = Approval ] || echo "note: $r2 was staging's newest verified release, yet its pin is recorded as $kind, not Approval"

  # The manual rollback.
  local reason="INC-77 rollback"
  application "$r1" "$reason"
  await 120 "prod to be Pinned to $r1, healthy and verified" verified prod "$r1" Pinned
  echo "measured: rollback pin applied → Healthy and verified in prod = $(since "$PINNED_AT") s"
  show_state prod; show_history prod
  local entry; entry=$(pin_recorded ManualRollback "$r1" "$reason")
  echo "prod's history entry: $entry"
  [ "$(jq -r .from <<<"$entry")" = "$r2" ] || fail "the ManualRollback is not from $r2"
  grep -q "verified: v1" <<<"$(answers prod /verify.html)" || fail "prod's Service does not serve v1 again"

  # The pin removed: prod follows staging again, and waits for approval of staging's release.
  application
  POLL=0.5 await 60 "prod to be AwaitingApproval with $r2 as candidate" awaiting_approval "$r2"
  show_state prod
  sleep 8
  awaiting_approval "$r2" || fail "8 s later prod is no longer AwaitingApproval with $r2: $(state prod '{phase, current, candidate}')"
  [ "$(field prod .current)" = "$r1" ] || fail "prod runs $(field prod .current) without an approval, not $r1"
  grep -q "verified: v1" <<<"$(answers prod /verify.html)" || fail "prod's Service does not serve v1 any more"
  echo "summary: $(summary)"
  events_include Approved ManualRollback AwaitingApproval
}

scenario_superseded() {
  # A long window in dev, so the next commits arrive while the rollout before them runs (the
  # window may not be longer than the progress deadline).
  setup 25s 40s
  push good v1
  local r1=$REL
  rolling_out() {
    [ "$(field dev .rollout.release)" = "$1" ] && [ -z "$(field dev .rollout.verdict.time)" ]
  }
  POLL=0.5 await 120 "dev to roll out $r1" rolling_out "$r1"
  push good v2
  local r2=$REL sha2=$SHA
  await_release "$r2" "$sha2"
  # Its candidate, or already rolling out if the rollout before it ended meanwhile.
  waits_in_dev() { [ "$(field dev .candidate)" = "$1" ] || [ "$(field dev .rollout.release)" = "$1" ]; }
  POLL=0.5 await 30 "$r2 to be dev's candidate" waits_in_dev "$r2"
  push good v3
  local r3=$REL sha3=$SHA
  await_release "$r3" "$sha3"
  local both_waiting=true
  if ! rolling_out "$r1"; then
    both_waiting=false
    echo "note: the rollout of $r1 reached its verdict before $r3 was built: nothing to supersede in dev"
  else
    echo "$r2 and $r3 are built while dev still rolls out $r1"
  fi
  await 120 "dev to be Healthy with $r3" is dev Healthy "$r3"
  show_history dev
  # No half rollout: $r1's rollout reached its verdict before anything else began.
  [ "$(history_entry dev "$r1" Rollout | jq -r .outcome)" = Succeeded ] || fail "dev's rollout of $r1 did not succeed"
  if $both_waiting; then
    local entry; entry=$(history_entry dev "$r2" Superseded)
    [ -n "$entry" ] || fail "dev's history does not record $r2 as Superseded"
    [ "$(jq -r .outcome <<<"$entry")" = Skipped ] || fail "the Superseded entry of $r2 has outcome $(jq -r .outcome <<<"$entry")"
    [ -z "$(history_entry dev "$r2" Rollout)" ] || fail "dev rolled $r2 out although $r3 was waiting"
    echo "dev skipped $r2 for $r3: $entry"
  fi
  # In prod: a candidate that a newer one replaces before approval is recorded Superseded.
  POLL=0.5 await 180 "prod to be AwaitingApproval with $r3 as candidate" awaiting_approval "$r3"
  show_history prod
  local skipped; skipped=$(state prod '[.history[]? | select(.kind == "Superseded") | .release]')
  echo "prod's superseded candidates: $skipped"
  [ "$(jq 'length' <<<"$skipped")" -ge 1 ] || fail "prod's history records no Superseded candidate ($r1 was prod's candidate before $r3)"
  [ "$(jq --arg r "$r1" 'any(. == $r)' <<<"$skipped")" = true ] || fail "prod's history does not record $r1 as Superseded"
  events_include Superseded
}

# --- running them --------------------------------------------------------------------------

# one SCENARIO — runs it in a fresh namespace; on failure prints the diagnostics.
one() {
  SCENARIO=$1
  NS="$NS_PREFIX-$SCENARIO"
  WORK="$OUT/$SCENARIO.work"
  rm -rf "$WORK"; mkdir -p "$WORK"
  [ -n "${DEADLINE[$SCENARIO]:-}" ] || die "no scenario '$SCENARIO'"
  echo "---- scenario $SCENARIO in namespace $NS (run $RUN_ID)"
  kc delete namespace "$NS" --ignore-not-found --wait --timeout=120s >/dev/null
  kc create namespace "$NS" >/dev/null
  kc label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
  grant_tenant "$NS" >/dev/null
  local rc
  set +e
  (set -e; "scenario_${SCENARIO//-/_}")
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then echo "PASS $SCENARIO"; return 0; fi
  diagnostics
  echo "FAIL $SCENARIO"
  return 1
}

main() {
  case "${1:-}" in
    --one) mkdir -p "$OUT"; one "$2"; return ;;
    --diagnose) SCENARIO=$2; NS="$NS_PREFIX-$2"; diagnostics; return ;;
  esac
  run_scenarios "$@"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then main "$@"; fi
