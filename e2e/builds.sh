#!/usr/bin/env bash
# End to end: Ferry's builds on the real cluster, driven only as a user drives them: pushing to
# the cluster's git server and `kubectl apply`. Assumes Ferry is installed in ferry-system by
# `install_ferry` (e2e/lib/ferry.sh); e2e/install.sh runs it after its one-apply checks.
#
#   e2e/builds.sh                    # every scenario
#   e2e/builds.sh release webhook    # only these
#
# Each scenario has its own namespace (ferry-e2e-build-<scenario>, granted to Ferry with
# `grant_tenant`), its own git repositories and image repositories (named with this run's id,
# so what a kept cluster holds from an earlier run cannot make a scenario pass), its own log
# and its own deadline. Independent ones run side by side; the webhook scenario runs alone so
# its timings are not those of a loaded machine, and the controller-restart one last, since it
# kills the controller under everyone's feet.
#
#   release            a pushed commit becomes BuildJob <app>-<sha7>, Succeeded, then Release
#                      <app>-0.0.0-<sha7> whose image digest is in the registry and runs as a
#                      pod that answers HTTP; the Application's status points at all three
#   tag                a commit pushed with tag v1.2.0 gets Release <app>-1.2.0, version 1.2.0
#   work-items         #12 and PROJ-7 from two commits since the previous Release end up in
#                      the new Release's workItems (and the previous Release's #5 does not)
#   failing-test       a failing test script: BuildJob Failed at step build, ScriptFailed, with
#                      the script's output in its log tail; no Release
#   wrong-password     a push Secret with a wrong password for the registry with auth:
#                      PublishFailed naming the refusal, no password anywhere, no Release;
#                      the same build with the right password succeeds
#   unreachable        a missing repository, a closed port, a missing branch: Ready=False with
#                      a reason, no BuildJob, and no hot loop of look-ups
#   unchanged-rebuild  a commit that changes nothing in the output uploads no layer blob
#   webhook            a signed push webhook builds at once (poll interval 10m); forged and
#                      unsigned ones build nothing and are counted in ferry_webhook_requests_total
#   timeout-and-delete a build longer than build.timeout (1m) is stopped and fails TimedOut with
#                      no Release; deleting a running BuildJob deletes its build pod
#   controller-restart the controller pod killed while a build runs; stopped until the build
#                      pod has succeeded; killed right after the build pod succeeded: each time
#                      exactly one BuildJob, one build pod and one Release
#
# Prints PASS/FAIL per scenario and its `measured:` lines; a failed scenario's log (with the
# Application, BuildJobs, Releases, pods, Events and the controller's log tail) is printed
# whole. Logs stay in $FERRY_E2E_BUILDS_OUT (default /tmp/ferry-e2e-builds-<run>). On success
# the scenarios' namespaces are deleted; on failure they are left for inspection.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC2034 # e2e/lib/ferry.sh reads it
root=$(cd "$here/.." && pwd)
source "$here/cluster/lib.sh"
source "$here/lib/ferry.sh"
source "$here/lib/scenarios.sh"

SYSTEM=ferry-system
NS_PREFIX=ferry-e2e-build
# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
SUITE=builds
RUN_ID=${FERRY_E2E_BUILDS_RUN:-$(date +%s)}
OUT=${FERRY_E2E_BUILDS_OUT:-/tmp/ferry-e2e-builds-$RUN_ID}
BASE_IMAGE="$REGISTRY/busybox:1.35"
# The test app's build: its tests, then its page into the output directory (whose contents
# land at the image's root, so the page is at /www).
SCRIPT='./test.sh
cp -r www "$FERRY_OUTPUT_DIR"/'
MANIFEST_TYPES='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'

# The scenarios side by side, then each of the others alone, in this order.
# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
PARALLEL=(release tag work-items failing-test wrong-password unreachable unchanged-rebuild timeout-and-delete)
# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
ALONE=(webhook controller-restart)
# shellcheck disable=SC2034 # read by e2e/lib/scenarios.sh
declare -A DEADLINE=([timeout-and-delete]=300 [release]=300 [tag]=300 [work-items]=360 [failing-test]=240
  [wrong-password]=240 [unreachable]=180 [unchanged-rebuild]=360 [webhook]=300
  [controller-restart]=420)

# --- helpers for one scenario (its namespace is $NS) ----------------------------------------

fail() { echo "FAIL: $*"; exit 1; }


# build_phase JOB WANTED — 0 once the BuildJob's phase is WANTED, 2 if it ended otherwise.
build_phase() {
  local phase; phase=$(jp "buildjob/$1" '{.status.phase}')
  [ "$phase" = "$2" ] && return 0
  case "$phase" in Succeeded | Failed)
    echo "BuildJob $1 ended $phase: $(jp "buildjob/$1" '{.status.failure}')"; return 2 ;;
  esac
  return 1
}

# releases_of COMMIT — how many Releases in $NS record COMMIT.
releases_of() {
  kn get releases -o json | jq --arg c "$1" '[.items[] | select(.spec.commit == $c)] | length'
}
buildjobs_of() {
  kn get buildjobs -o json | jq --arg c "$1" '[.items[] | select(.spec.commit == $c)] | length'
}
# pods_of JOB — the names of the pods the BuildJob owns.
pods_of() {
  kn get pods -o json | jq -r --arg j "$1" \
    '.items[] | select(any(.metadata.ownerReferences[]?; .kind == "BuildJob" and .name == $j)) | .metadata.name'
}

# new_repo DIR MESSAGE — a work tree with the test app, committed once.
new_repo() {
  cp -a "$here/testdata/app" "$1"
  git -C "$1" init --quiet --initial-branch=main
  commit "$1" "$2" >/dev/null
}
# commit DIR MESSAGE — commits everything in DIR, prints the commit.
commit() {
  git -C "$1" add -A
  git -C "$1" -c user.name=e2e -c user.email=e2e@ferry.invalid commit --quiet --allow-empty -m "$2"
  git -C "$1" rev-parse HEAD
}
# push DIR REPO [REFS...] — pushes main (and REFS) to the git server, which creates REPO.
push() {
  local dir=$1 repo=$2
  shift 2
  git -C "$dir" push --quiet "$GIT_URL/$repo.git" main "$@"
  echo "pushed $(git -C "$dir" rev-parse --short=7 HEAD) to $GIT_URL/$repo.git"
}
repo_name() { echo "e2e-builds-$SCENARIO-$1-$RUN_ID"; }

# application NAME URL [KEY=VALUE...] — applies an Application of the test app. Keys: poll,
# branch, webhook (a Secret's name), script, base_image, repository, push_secret, timeout.
application() {
  local name=$1 url=$2
  shift 2
  local poll=5s branch=main webhook="" script=$SCRIPT repository="$REGISTRY/$NS/$RUN_ID/$name"
  local push_secret="" base_image=$BASE_IMAGE timeout=5m kv
  for kv in "$@"; do
    case ${kv%%=*} in
      poll | branch | webhook | script | base_image | repository | push_secret | timeout) local "$kv" ;;
      *) fail "application: unknown key in '$kv'" ;;
    esac
  done
  jq -n --arg name "$name" --arg url "$url" --arg branch "$branch" --arg poll "$poll" \
    --arg webhook "$webhook" --arg script "$script" --arg builder "$BASE_IMAGE" --arg base "$base_image" \
    --arg repository "$repository" --arg push_secret "$push_secret" --arg timeout "$timeout" '{
      apiVersion: "ferry.dev/v1alpha1", kind: "Application", metadata: {name: $name},
      spec: {
        source: ({url: $url, branch: $branch, pollInterval: $poll}
          + if $webhook == "" then {} else {webhookSecret: $webhook} end),
        build: {builderImage: $builder, script: $script, baseImage: $base,
          entrypoint: ["httpd", "-f", "-p", "8080", "-h", "/www"], timeout: $timeout},
        image: ({repository: $repository, insecure: true}
          + if $push_secret == "" then {} else {pushSecret: $push_secret} end)
      }}' | kn apply -f - >/dev/null
  echo "applied Application $name (source $url, branch $branch, poll $poll${webhook:+, webhook Secret $webhook})"
}
repository_of() { jp "application/$1" '{.spec.image.repository}'; }

# manifest_code IMAGE — the registry's answer to a HEAD of IMAGE's manifest by digest.
manifest_code() {
  local image=$1 registry=${1%%/*} path=${1#*/}
  curl -sS -I -o /dev/null -w '%{http_code}' -H "Accept: $MANIFEST_TYPES" \
    "http://$registry/v2/${path%@*}/manifests/${image#*@}"
}
# layers_of IMAGE — the layer digests of IMAGE's manifest, one a line.
layers_of() {
  local registry=${1%%/*} path=${1#*/}
  curl -fsS -H "Accept: $MANIFEST_TYPES" "http://$registry/v2/${path%@*}/manifests/${1#*@}" |
    jq -r '.layers[].digest'
}

# webhook_count METRICS RESULT — ferry_webhook_requests_total{result=RESULT}, 0 when absent.
webhook_count() {
  awk -v r="result=\"$2\"" '$1 ~ /^ferry_webhook_requests_total\{/ && index($1, r) {n += $2}
    END {print n + 0}' <<<"$1"
}

# The answer of an Application's Ready condition: "status reason".
ready_of() {
  jp "application/$1" '{.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason}'
}

diagnostics() {
  echo "---- diagnostics for namespace $NS"
  kn get applications,buildjobs,releases,pods -o wide 2>&1 || true
  kn get applications -o yaml 2>&1 | sed -n '/^  status:/,/^- /p' | head -n 80 || true
  kn get buildjobs -o yaml 2>&1 | sed -n '/^  status:/,/^- /p' | head -n 120 || true
  kn get releases -o json 2>/dev/null | jq -c '.items[] | {name: .metadata.name, spec}' || true
  kn get events --sort-by=.lastTimestamp 2>&1 | tail -n 30 || true
  local pod
  for pod in $(kn get pods -o name 2>/dev/null); do
    echo "---- $pod"
    kn get "$pod" -o jsonpath='{range .status.initContainerStatuses[*]}{.name}: {.state}{"\n"}{end}{range .status.containerStatuses[*]}{.name}: {.state}{"\n"}{end}' || true
    kn logs "$pod" --all-containers --prefix --tail=20 2>&1 || true
  done
  echo "---- the controller's last log lines"
  kc -n "$SYSTEM" logs deployment/ferry --tail=40 2>&1 || true
  echo "---- the git server's lines about this scenario's repositories"
  grep -F "e2e-builds-$SCENARIO-" "$LOGS/gitserver.log" | tail -n 20 || true
}

# --- the scenarios -----------------------------------------------------------------------------

scenario_release() {
  local dir="$WORK/app" repo sha
  repo=$(repo_name app)
  new_repo "$dir" "first version"
  sha=$(git -C "$dir" rev-parse HEAD)
  push "$dir" "$repo"
  application web "$GIT_URL/$repo.git"
  local job="web-${sha:0:7}" release="web-0.0.0-${sha:0:7}" repository
  repository=$(repository_of web)
  await 60 "BuildJob $job to be created" has buildjob "$job"
  await 240 "BuildJob $job to reach phase Succeeded" build_phase "$job" Succeeded
  await 60 "Release $release to be created" has release "$release"

  local version commit image
  version=$(jp "release/$release" '{.spec.version}')
  commit=$(jp "release/$release" '{.spec.commit}')
  image=$(jp "release/$release" '{.spec.image}')
  echo "Release $release: version $version, commit $commit, image $image"
  [ "$version" = "0.0.0-${sha:0:7}" ] || fail "Release version $version, expected 0.0.0-${sha:0:7}"
  [ "$commit" = "$sha" ] || fail "Release commit $commit, expected $sha"
  [ "${image%@*}" = "$repository" ] || fail "Release image $image is not in $repository"
  [[ "${image#*@}" =~ ^sha256:[0-9a-f]{64}$ ]] || fail "Release image $image is not by digest"
  [ "$(jp "buildjob/$job" '{.status.image}')" = "$image" ] \
    || fail "BuildJob status.image $(jp "buildjob/$job" '{.status.image}') is not the Release's"
  [ "$(jp "buildjob/$job" '{.status.release}')" = "$release" ] \
    || fail "BuildJob status.release is '$(jp "buildjob/$job" '{.status.release}')', expected $release"
  local code; code=$(manifest_code "$image")
  echo "registry: HEAD of the manifest ${image#*@}: $code"
  [ "$code" = 200 ] || fail "the registry does not have the Release's manifest ($code)"
  local started finished
  started=$(jp "buildjob/$job" '{.status.startTime}')
  finished=$(jp "buildjob/$job" '{.status.completionTime}')
  if [ -n "$started" ] && [ -n "$finished" ]; then
    echo "measured: build pod start → build finished = $(($(date -d "$finished" +%s) - $(date -d "$started" +%s))) s"
  fi

  app_status_is() {
    [ "$(jp application/web '{.status.latestCommit} {.status.latestBuild} {.status.latestRelease}')" \
      = "$sha $job $release" ]
  }
  await 30 "Application web's status.latestCommit/latestBuild/latestRelease to be $sha $job $release" \
    app_status_is

  # The image runs as any restricted pod would, and serves the page the build copied.
  kn apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: web-run}
spec:
  terminationGracePeriodSeconds: 1
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    seccompProfile: {type: RuntimeDefault}
  containers:
  - name: web
    image: $image
    ports: [{containerPort: 8080}]
    readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
    securityContext:
      allowPrivilegeEscalation: false
      readOnlyRootFilesystem: true
      capabilities: {drop: [ALL]}
EOF
  kn wait --for=condition=Ready pod/web-run --timeout=90s
  local ip page
  ip=$(jp pod/web-run '{.status.podIP}')
  page=$(curl -fsS --max-time 5 "http://$ip:8080/") || fail "GET http://$ip:8080/ failed"
  echo "GET http://$ip:8080/ (pod web-run, image $image): $(grep -o 'hello[^<]*' <<<"$page")"
  grep -q 'hello from the ferry e2e app' <<<"$page" || fail "the page is not the app's: $page"
}

scenario_tag() {
  local dir="$WORK/app" repo sha
  repo=$(repo_name app)
  new_repo "$dir" "version 1.2.0"
  sha=$(git -C "$dir" rev-parse HEAD)
  git -C "$dir" -c user.name=e2e -c user.email=e2e@ferry.invalid tag -a v1.2.0 -m "release 1.2.0"
  push "$dir" "$repo" refs/tags/v1.2.0
  application web "$GIT_URL/$repo.git"
  local job="web-${sha:0:7}" release="web-1.2.0"
  await 60 "BuildJob $job to be created" has buildjob "$job"
  await 240 "BuildJob $job to reach phase Succeeded" build_phase "$job" Succeeded
  tagged_release() {
    has release "$release" && return 0
    # An untagged version for this commit means the tag was missed: no use waiting.
    if has release "web-0.0.0-${sha:0:7}"; then echo "Release web-0.0.0-${sha:0:7} was made instead"; return 2; fi
    return 1
  }
  await 60 "Release $release to be created" tagged_release
  local version commit
  version=$(jp "release/$release" '{.spec.version}')
  commit=$(jp "release/$release" '{.spec.commit}')
  echo "Release $release: version $version, commit $commit"
  [ "$version" = 1.2.0 ] || fail "Release version $version, expected 1.2.0"
  [ "$commit" = "$sha" ] || fail "Release commit $commit, expected $sha"
  sleep 5   # a second Release for the same commit would come right after the first
  local n; n=$(releases_of "$sha")
  [ "$n" = 1 ] || fail "$n Releases record commit $sha, expected 1"
}

scenario_work_items() {
  local dir="$WORK/app" repo first head
  repo=$(repo_name app)
  new_repo "$dir" "first version (#5)"
  first=$(git -C "$dir" rev-parse HEAD)
  push "$dir" "$repo"
  application web "$GIT_URL/$repo.git"
  await 60 "BuildJob web-${first:0:7} to be created" has buildjob "web-${first:0:7}"
  await 240 "BuildJob web-${first:0:7} to reach phase Succeeded" build_phase "web-${first:0:7}" Succeeded
  await 60 "Release web-0.0.0-${first:0:7} of the first commit" has release "web-0.0.0-${first:0:7}"

  # Two commits since that Release, pushed together: only the head is built, and its Release
  # names the work items of both.
  echo "cart" >"$dir/www/cart.html"
  commit "$dir" "Cart total (#12)" >/dev/null
  echo "faster" >>"$dir/www/cart.html"
  head=$(commit "$dir" "PROJ-7 faster checkout")
  push "$dir" "$repo"
  local job="web-${head:0:7}" release="web-0.0.0-${head:0:7}"
  await 60 "BuildJob $job to be created" has buildjob "$job"
  await 240 "BuildJob $job to reach phase Succeeded" build_phase "$job" Succeeded
  await 60 "Release $release to be created" has release "$release"
  local items; items=$(kn get release "$release" -o json | jq -c '.spec.workItems // []')
  echo "Release $release: workItems $items"
  jq -e 'index("#12") != null and index("PROJ-7") != null' <<<"$items" >/dev/null \
    || fail "workItems $items lack #12 or PROJ-7"
  # #5 came before the previous Release: it is that Release's, not this one's.
  jq -e 'index("#5") == null' <<<"$items" >/dev/null || fail "workItems $items name #5 of an earlier Release"
}

scenario_failing_test() {
  local dir="$WORK/app" repo sha
  repo=$(repo_name app)
  cp -a "$here/testdata/app" "$dir"
  printf '#!/bin/sh\necho "e2e-marker: cart total expected 3, got 4"\nexit 1\n' >"$dir/test.sh"
  git -C "$dir" init --quiet --initial-branch=main
  sha=$(commit "$dir" "break the cart test")
  push "$dir" "$repo"
  application web "$GIT_URL/$repo.git"
  local job="web-${sha:0:7}"
  await 60 "BuildJob $job to be created" has buildjob "$job"
  await 240 "BuildJob $job to reach phase Failed" build_phase "$job" Failed
  local step reason tail
  step=$(jp "buildjob/$job" '{.status.failure.step}')
  reason=$(jp "buildjob/$job" '{.status.failure.reason}')
  tail=$(jp "buildjob/$job" '{.status.failure.logTail}')
  echo "BuildJob $job failed: step $step, reason $reason, message: $(jp "buildjob/$job" '{.status.failure.message}')"
  echo "log tail: $tail"
  [ "$step" = build ] || fail "failure.step is '$step', expected build"
  [ "$reason" = ScriptFailed ] || fail "failure.reason is '$reason', expected ScriptFailed"
  grep -q 'e2e-marker: cart total expected 3, got 4' <<<"$tail" || fail "the log tail lacks the script's output"
  sleep 10   # time enough for a Release that should not come
  local n; n=$(releases_of "$sha")
  [ "$n" = 0 ] || fail "$n Releases for the failed commit $sha"
  [ -z "$(jp application/web '{.status.latestRelease}')" ] \
    || fail "the Application names a latestRelease: $(jp application/web '{.status.latestRelease}')"
}

script_running() {
  [ "$(jp "buildjob/$1" '{.status.conditions[?(@.type=="Ready")].message}')" = "step build is running" ]
}
pod_gone() { ! kn get pod "$1" -o name >/dev/null 2>&1; }

scenario_timeout_and_delete() {
  local dir="$WORK/app" repo sha
  repo=$(repo_name app)
  cp -a "$here/testdata/app" "$dir"
  printf '#!/bin/sh\necho "e2e-marker: a very long test"\nsleep 600\n' >"$dir/test.sh"
  git -C "$dir" init --quiet --initial-branch=main
  sha=$(commit "$dir" "a test that never ends")
  push "$dir" "$repo"
  application slow "$GIT_URL/$repo.git" timeout=1m
  application doomed "$GIT_URL/$repo.git"
  local slow="slow-${sha:0:7}" doomed="doomed-${sha:0:7}"
  await 60 "BuildJob $doomed to run its script" script_running "$doomed"
  kn delete buildjob "$doomed" --wait=false >/dev/null
  echo "deleted BuildJob $doomed while its script ran"
  await 90 "its pod $doomed to be deleted with it" pod_gone "$doomed"
  await 200 "BuildJob $slow to reach phase Failed" build_phase "$slow" Failed
  local reason; reason=$(jp "buildjob/$slow" '{.status.failure.reason}')
  echo "BuildJob $slow failed: $reason: $(jp "buildjob/$slow" '{.status.failure.message}')"
  [ "$reason" = TimedOut ] || fail "failure.reason is '$reason', expected TimedOut"
  [ "$(jp "pod/$slow" '{.status.phase}')" = Failed ] || fail "the pod of $slow still runs"
  local n; n=$(releases_of "$sha")
  [ "$n" = 0 ] || fail "$n Releases for the timed-out commit $sha"
}

# push_secret NAME PASSWORD — a dockerconfigjson Secret for the registry with auth; prints the
# `auth` field (user:password in base64), which must stay as secret as the password.
push_secret() {
  local auth config
  auth=$(printf '%s:%s' "$AUTH_REGISTRY_USER" "$2" | base64 -w0)
  config=$(jq -nc --arg r "$AUTH_REGISTRY" --arg u "$AUTH_REGISTRY_USER" --arg p "$2" \
    --arg a "$auth" '{auths: {($r): {username: $u, password: $p, auth: $a}}}')
  kn create secret generic "$1" --type=kubernetes.io/dockerconfigjson \
    --from-literal=.dockerconfigjson="$config" >/dev/null
  echo "$auth"
}

# Every image of these builds is in the registry with auth, the base too (a private registry):
# with a wrong password the build fails, with the right one the same build succeeds, so it is
# the password that makes the difference.
scenario_wrong_password() {
  local dir="$WORK/app" repo sha password="wrong-e2e-$RUN_ID-pass" auth
  repo=$(repo_name app)
  auth=$(push_secret wrong-credentials "$password")
  push_secret right-credentials "$AUTH_REGISTRY_PASSWORD" >/dev/null
  new_repo "$dir" "first version"
  sha=$(git -C "$dir" rev-parse HEAD)
  push "$dir" "$repo"
  local app
  for app in wrong right; do
    application "$app" "$GIT_URL/$repo.git" push_secret="$app-credentials" \
      base_image="$AUTH_REGISTRY/busybox:1.35" repository="$AUTH_REGISTRY/$NS/$RUN_ID/$app"
  done
  local job="wrong-${sha:0:7}"
  await 60 "BuildJob $job to be created" has buildjob "$job"
  await 240 "BuildJob $job to reach phase Failed" build_phase "$job" Failed
  local step reason message
  step=$(jp "buildjob/$job" '{.status.failure.step}')
  reason=$(jp "buildjob/$job" '{.status.failure.reason}')
  message=$(jp "buildjob/$job" '{.status.failure.message}')
  echo "BuildJob $job failed: step $step, reason $reason, message: $message"
  [ "$reason" = PublishFailed ] || fail "failure.reason is '$reason', expected PublishFailed"
  [ "$step" = publish ] || fail "failure.step is '$step', expected publish"
  grep -Eqi 'unauthori[sz]ed|denied|refus|401|credential|authenticat' <<<"$message" \
    || fail "the message does not say the registry refused the credentials"
  # The password, and the auth field that encodes it, appear nowhere a user or log reader sees.
  {
    kn get buildjobs,applications,releases -o yaml
    kn get events -o yaml
    for pod in $(pods_of "$job"); do kn logs "$pod" --all-containers 2>&1; done
    kc -n "$SYSTEM" logs deployment/ferry 2>&1
  } >"$WORK/visible.txt"
  if grep -qF -e "$password" -e "$auth" "$WORK/visible.txt"; then
    grep -nF -e "$password" -e "$auth" "$WORK/visible.txt" | head -n 5
    fail "the push password shows in status, Events or logs"
  fi
  echo "the password is in none of: BuildJobs, Applications, Events, build pod logs, controller log ($(wc -l <"$WORK/visible.txt") lines)"

  # The control: the right password, same commit, same registry.
  await 60 "BuildJob right-${sha:0:7} to be created" has buildjob "right-${sha:0:7}"
  await 240 "BuildJob right-${sha:0:7} (the right password) to reach phase Succeeded" \
    build_phase "right-${sha:0:7}" Succeeded
  await 60 "Release right-0.0.0-${sha:0:7}" has release "right-0.0.0-${sha:0:7}"
  local n; n=$(kn get releases -o json | jq '[.items[] | select(.spec.application == "wrong")] | length')
  [ "$n" = 0 ] || fail "$n Releases of Application wrong, whose image was never pushed"
}

scenario_unreachable() {
  local dir="$WORK/app" repo missing="does-not-exist-$RUN_ID"
  repo=$(repo_name app)
  new_repo "$dir" "first version"
  push "$dir" "$repo"
  application missing "$GIT_URL/$missing.git"
  application closed "http://$NODE_IP:1/x.git"
  application nobranch "$GIT_URL/$repo.git" branch=release
  local app
  declare -A expected=([missing]=NotAGitRepository [closed]=RepositoryUnreachable
    [nobranch]=BranchNotFound)
  not_ready() {
    local ready; ready=$(ready_of "$1")
    [ "${ready%% *}" = False ] && [ -n "${ready#* }" ] && [ "${ready#* }" != False ]
  }
  for app in missing closed nobranch; do
    await 60 "Application $app to be Ready=False with a reason" not_ready "$app"
    local ready reason
    ready=$(ready_of "$app")
    reason=${ready#* }
    echo "Application $app ($(jp "application/$app" '{.spec.source.url}') branch $(jp "application/$app" '{.spec.source.branch}')): Ready=False, reason $reason (the controller names this case ${expected[$app]}): $(jp "application/$app" '{.status.conditions[?(@.type=="Ready")].message}')"
    [ "$reason" != Ready ] || fail "Application $app is Ready=False with reason Ready"
  done
  # Failed look-ups are retried with backoff, not in a loop. Polls every 5 s with jitter make
  # at most ~5 look-ups in 20 s; a hot loop would make hundreds.
  local before after
  before=$(grep -c "$missing" "$LOGS/gitserver.log" || true)
  sleep 20
  after=$(grep -c "$missing" "$LOGS/gitserver.log" || true)
  echo "measured: look-ups of a missing repository in 20 s = $((after - before))"
  [ $((after - before)) -le 10 ] || fail "$((after - before)) look-ups in 20 s: a hot loop"
  local jobs; jobs=$(kn get buildjobs -o name)
  [ -z "$jobs" ] || fail "BuildJobs were made: $jobs"
  for app in missing closed nobranch; do
    [ "$(ready_of "$app" | cut -d' ' -f1)" = False ] || fail "Application $app became $(ready_of "$app")"
  done
}

# Between two builds whose output is the same, the registry receives no layer blob. The count
# is of finished blob uploads (a PUT, or a one-shot POST, with `digest=` that the registry
# answers 201) for this image repository in the registry's access log, between the first build's
# end and the second's. The layers are what must not be sent again: the config blob may differ
# between the two (it can record a time or the commit), so it is counted apart. A cross-
# repository mount (`mount=`) is not an upload. The first build's own count (its new layer is
# uploaded) shows the count sees uploads at all.
scenario_unchanged_rebuild() {
  local dir="$WORK/app" repo first second path log="$LOGS/registry.log"
  repo=$(repo_name app)
  new_repo "$dir" "first version"
  first=$(git -C "$dir" rev-parse HEAD)
  local lines_before; lines_before=$(wc -l <"$log")
  push "$dir" "$repo"
  application web "$GIT_URL/$repo.git"
  path=$(repository_of web); path=${path#*/}
  await 60 "BuildJob web-${first:0:7} to be created" has buildjob "web-${first:0:7}"
  await 240 "BuildJob web-${first:0:7} to reach phase Succeeded" build_phase "web-${first:0:7}" Succeeded
  local image1; image1=$(jp "buildjob/web-${first:0:7}" '{.status.image}')
  [ -n "$image1" ] || fail "BuildJob web-${first:0:7} succeeded without status.image"
  local lines_between; lines_between=$(wc -l <"$log")

  echo "the README changed" >>"$dir/README.md"
  second=$(commit "$dir" "docs: README only, the output stays the same")
  push "$dir" "$repo"
  await 60 "BuildJob web-${second:0:7} to be created" has buildjob "web-${second:0:7}"
  await 240 "BuildJob web-${second:0:7} to reach phase Succeeded" build_phase "web-${second:0:7}" Succeeded
  local image2; image2=$(jp "buildjob/web-${second:0:7}" '{.status.image}')
  local lines_after; lines_after=$(wc -l <"$log")
  echo "images: $image1 then $image2"

  # uploaded FROM TO — the digests of blobs uploaded to $path between those log lines.
  uploaded() {
    sed -n "$(($1 + 1)),$2p" "$log" |
      grep -E "\"(PUT|POST) /v2/$path/blobs/uploads/[^ \"]*digest=sha256(:|%3A)[0-9a-f]{64}[^ \"]* HTTP/[0-9.]+\" 201 " |
      grep -oE 'digest=sha256(:|%3A)[0-9a-f]{64}' | sed 's/^digest=sha256\(:\|%3A\)/sha256:/' || true
  }
  local layers1 layers2
  layers1=$(layers_of "$image1") || fail "cannot read the manifest of $image1"
  layers2=$(layers_of "$image2") || fail "cannot read the manifest of $image2"
  [ "$layers1" = "$layers2" ] || fail "the same output gave other layers: $layers1 / $layers2"
  local first_uploads first_layers uploads layer_uploads
  first_uploads=$(uploaded "$lines_before" "$lines_between")
  first_layers=$(grep -cxF -f <(echo "$layers1") <<<"$first_uploads" || true)
  uploads=$(uploaded "$lines_between" "$lines_after")
  layer_uploads=$(grep -cxF -f <(echo "$layers2") <<<"$uploads" || true)
  echo "measured: layer blob uploads on the first build = $first_layers"
  echo "measured: layer blob uploads on an unchanged rebuild = $layer_uploads"
  echo "measured: blob uploads on an unchanged rebuild, config included = $(grep -c . <<<"$uploads" || true)"
  [ "$first_layers" -ge 1 ] || fail "the first build uploaded no layer: the count sees no uploads"
  [ "$layer_uploads" = 0 ] || fail "the unchanged rebuild uploaded $layer_uploads layer blob(s)"
}

scenario_webhook() {
  local secret="e2e-hook-$RUN_ID" app dir repo
  kn create secret generic hook-secret --from-literal=secret="$secret" >/dev/null
  local ip; ip=$(kc -n "$SYSTEM" get service ferry-webhook -o jsonpath='{.spec.clusterIP}') \
    || fail "no Service ferry-webhook in $SYSTEM"
  declare -A first
  for app in web forged unsigned; do
    dir="$WORK/$app"; repo=$(repo_name "$app")
    new_repo "$dir" "first version"
    first[$app]=$(git -C "$dir" rev-parse HEAD)
    push "$dir" "$repo"
    # Polled every 10 minutes: only the webhook can make a later build come quickly.
    application "$app" "$GIT_URL/$repo.git" poll=10m webhook=hook-secret
  done
  # The first look-up finds the first commits; the webhooks are set after, so they announce
  # only what is pushed next.
  for app in web forged unsigned; do
    await 60 "BuildJob $app-${first[$app]:0:7} of the first look-up" has buildjob "$app-${first[$app]:0:7}"
  done
  await 240 "Release web-0.0.0-${first[web]:0:7}" has release "web-0.0.0-${first[web]:0:7}"
  local url
  for app in web forged unsigned; do
    url="http://$ip:9443/webhooks/$NS/$app"
    case $app in
      web) "$here/cluster/git-webhook.sh" "$(repo_name "$app")" "$url" "$secret" ;;
      forged) "$here/cluster/git-webhook.sh" "$(repo_name "$app")" "$url" "not-$secret" ;;
      unsigned) "$here/cluster/git-webhook.sh" "$(repo_name "$app")" "$url" ;;
    esac
  done
  local before; before=$(metrics) || fail "cannot read the controller's /metrics"

  # A signed push: BuildJob, build pod and Release, timed from the push.
  dir="$WORK/web"
  echo "second" >"$dir/www/second.html"
  local sha t0 job release pod="" pod_at="" job_at="" release_at=""
  sha=$(commit "$dir" "second version")
  job="web-${sha:0:7}" release="web-0.0.0-${sha:0:7}"
  t0=$(now)
  push "$dir" "$(repo_name web)"
  while [ -z "$pod_at" ]; do
    if [ -z "$job_at" ] && has buildjob "$job"; then job_at=$(since "$t0"); fi
    if [ -n "$job_at" ]; then
      pod=$(pods_of "$job" | sed -n 1p)
      [ -z "$pod" ] || pod_at=$(since "$t0")
    fi
    awk -v s="$(since "$t0")" 'BEGIN {exit !(s > 30)}' && fail "no build pod for $job 30 s after the push"
    sleep 0.1
  done
  echo "measured: webhook push → BuildJob created = $job_at s"
  echo "measured: webhook push → build pod = $pod_at s"
  awk -v s="$job_at" 'BEGIN {exit !(s <= 5)}' \
    || fail "BuildJob $job came $job_at s after the push: not the webhook's doing"
  awk -v s="$pod_at" 'BEGIN {exit !(s <= 1)}' \
    || echo "note: issue 11 asks for a build pod within 1 s of the push; it took $pod_at s"
  while [ -z "$release_at" ]; do
    has release "$release" && release_at=$(since "$t0")
    build_phase "$job" Failed >/dev/null && fail "BuildJob $job failed: $(jp "buildjob/$job" '{.status.failure}')"
    awk -v s="$(since "$t0")" 'BEGIN {exit !(s > 240)}' && fail "no Release $release 240 s after the push"
    [ -n "$release_at" ] || sleep 0.2
  done
  echo "measured: commit pushed → Release created = $release_at s"

  # A forged and an unsigned push: refused, counted, nothing built.
  local app_sha
  declare -A second
  for app in forged unsigned; do
    dir="$WORK/$app"
    echo "$app" >"$dir/www/$app.html"
    second[$app]=$(commit "$dir" "second version")
    push "$dir" "$(repo_name "$app")"
  done
  delivered() { grep -q "webhook $(repo_name "$1") refs/heads/main attempt" "$LOGS/gitserver.log"; }
  for app in forged unsigned; do
    await 15 "the git server to deliver $app's push" delivered "$app"
    echo "git server: $(grep "webhook $(repo_name "$app") " "$LOGS/gitserver.log" | tail -n1)"
  done
  sleep 5
  for app in forged unsigned; do
    app_sha=${second[$app]}
    if has buildjob "$app-${app_sha:0:7}"; then fail "the $app push made BuildJob $app-${app_sha:0:7}"; fi
    echo "no BuildJob for the $app push 5 s after its delivery"
  done
  local after; after=$(metrics) || fail "cannot read the controller's /metrics"
  grep '^ferry_webhook_requests_total' <<<"$after" || true
  local result
  for result in forged unsigned; do
    local b a
    b=$(webhook_count "$before" "$result"); a=$(webhook_count "$after" "$result")
    echo "ferry_webhook_requests_total{result=\"$result\"}: $b before, $a after"
    [ "$a" -gt "$b" ] || fail "the $result request was not counted as $result"
  done
}

# wait_pod_succeeded JOB SECONDS — until the BuildJob's pod has succeeded, polled closely.
wait_pod_succeeded() {
  local deadline=$((SECONDS + $2)) pod="" phase=""
  while [ "$phase" != Succeeded ]; do
    [ -n "$pod" ] || pod=$(pods_of "$1" | sed -n 1p)
    [ -z "$pod" ] || phase=$(jp "pod/$pod" '{.status.phase}')
    [ "$phase" != Failed ] || fail "build pod $pod failed"
    [ "$SECONDS" -lt "$deadline" ] || fail "timed out after $2 s waiting for the build pod of $1 to succeed"
    sleep 0.2
  done
  echo "build pod $pod succeeded"
}

# The controller is killed (1) while the build step runs; (2) stopped while the build step
# runs and started again only once the build pod has succeeded, so the new one finds a finished
# pod and no Release, the state between pod success and Release creation, for certain;
# (3) killed as soon as the build pod is seen succeeded, which may or may not fall before the
# Release (it says which). Each time: one BuildJob, one build pod, one Release.
scenario_controller_restart() {
  local dir="$WORK/app" repo sha job replicas
  repo=$(repo_name app)
  replicas=$(kc -n "$SYSTEM" get deployment ferry -o jsonpath='{.spec.replicas}')
  # The build step lasts a few seconds, so the controller can be stopped while it runs.
  local script='./test.sh
sleep 5
cp -r www "$FERRY_OUTPUT_DIR"/'
  new_repo "$dir" "first version"
  push "$dir" "$repo"
  application web "$GIT_URL/$repo.git" script="$script"

  local case
  for case in killed-mid-build stopped-until-the-pod-succeeded killed-after-the-pod-succeeded; do
    echo "-- $case"
    if [ "$case" != killed-mid-build ]; then
      echo "$case" >>"$dir/README.md"
      commit "$dir" "docs: $case" >/dev/null
      push "$dir" "$repo"
    fi
    sha=$(git -C "$dir" rev-parse HEAD)
    job="web-${sha:0:7}"
    await 60 "BuildJob $job to be created" has buildjob "$job"
    build_step_runs() {
      local pod; pod=$(pods_of "$job" | sed -n 1p)
      [ -n "$pod" ] && [ -n "$(jp "pod/$pod" '{.status.initContainerStatuses[?(@.name=="build")].state.running}')" ]
    }
    case $case in
      killed-mid-build)
        await 60 "the build step of $job to run" build_step_runs
        kc -n "$SYSTEM" delete pod -l app.kubernetes.io/name=ferry --wait=false
        echo "killed the controller while the build step of $job ran"
        ;;
      stopped-until-the-pod-succeeded)
        await 60 "the build step of $job to run" build_step_runs
        kc -n "$SYSTEM" scale deployment/ferry --replicas=0
        kc -n "$SYSTEM" wait --for=delete pod -l app.kubernetes.io/name=ferry --timeout=60s
        echo "stopped the controller while the build step of $job ran"
        wait_pod_succeeded "$job" 120
        local n; n=$(releases_of "$sha")
        [ "$n" = 0 ] || fail "$n Release(s) for $sha while no controller ran"
        kc -n "$SYSTEM" scale deployment/ferry --replicas="$replicas"
        echo "started the controller again: it finds a succeeded build pod and no Release"
        ;;
      killed-after-the-pod-succeeded)
        wait_pod_succeeded "$job" 120
        kc -n "$SYSTEM" delete pod -l app.kubernetes.io/name=ferry --wait=false
        if has release "web-0.0.0-${sha:0:7}"; then
          echo "killed the controller after the build pod succeeded; its Release was already made"
        else
          echo "killed the controller after the build pod succeeded, before its Release was made"
        fi
        ;;
    esac
    exactly_one "$sha" "$job" "web-0.0.0-${sha:0:7}"
    kc -n "$SYSTEM" rollout status deployment/ferry --timeout=120s
  done
}

# exactly_one COMMIT JOB RELEASE — the Release comes, and then, a while later, there is still
# one BuildJob, one build pod and one Release for COMMIT.
exactly_one() {
  await 240 "Release $3 to be created" has release "$3"
  sleep 10   # a duplicate made by the new controller would come within this
  local jobs releases pods
  jobs=$(buildjobs_of "$1"); releases=$(releases_of "$1"); pods=$(pods_of "$2" | grep -c . || true)
  echo "commit ${1:0:7}: $jobs BuildJob(s), $pods build pod(s), $releases Release(s)"
  [ "$jobs" = 1 ] && [ "$releases" = 1 ] && [ "$pods" = 1 ] \
    || fail "expected exactly one BuildJob, build pod and Release for commit $1"
}

# --- running them --------------------------------------------------------------------------

# one SCENARIO — runs it in a fresh namespace; on failure prints the diagnostics.
one() {
  SCENARIO=$1
  NS="$NS_PREFIX-$SCENARIO"
  WORK="$OUT/$SCENARIO.work"
  rm -rf "$WORK"; mkdir -p "$WORK"
  echo "---- scenario $SCENARIO in namespace $NS (run $RUN_ID)"
  kc delete namespace "$NS" --ignore-not-found --wait --timeout=120s >/dev/null
  kc create namespace "$NS" >/dev/null
  grant_tenant "$NS" >/dev/null
  local rc
  set +e
  (set -e; "scenario_${SCENARIO//-/_}")
  rc=$?
  set -e
  if [ "$SCENARIO" = controller-restart ] &&
    [ "$(kc -n "$SYSTEM" get deployment ferry -o jsonpath='{.spec.replicas}')" = 0 ]; then
    # It stops the controller for a while: never leave it stopped.
    kc -n "$SYSTEM" scale deployment/ferry --replicas=1
  fi
  if [ $rc -eq 0 ]; then echo "PASS $SCENARIO"; return 0; fi
  diagnostics
  echo "FAIL $SCENARIO"
  return 1
}

main() {
  case "${1:-}" in
    --one) one "$2"; return ;;
    --diagnose) SCENARIO=$2; NS="$NS_PREFIX-$2"; diagnostics; return ;;
  esac
  run_scenarios "$@"
}

main "$@"
