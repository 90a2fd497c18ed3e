#!/usr/bin/env bash
# `make demo`: Ferry on the real single-node cluster (docs/cluster.md), installed the way a user
# installs it, telling the story of e2e/lib/story.sh. Needs root. Everything stays up to explore;
# `make demo-down` (= make cluster-down) removes it. Without root: `make demo-apiserver`.
#
# The terminal gets the story and one line per slow step ("building CoreDNS v1.12.4 ... done in
# 2m17s"); everything the steps print goes to a log, $FERRY_CACHE/logs/demo-<time>.log (the
# newest is also $FERRY_CACHE/logs/demo.log), whose last lines are shown if something fails.
# Running it again on a cluster that is up reuses the cluster, installs Ferry again (an upgrade
# if it changed) and tells the story again from the start.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/cluster/lib.sh"
source "$here/lib/ferry.sh"
source "$here/lib/story.sh"
source "$here/images/lib.sh"
source "$here/lib/testserver.sh"

[ "$(id -u)" = 0 ] || die "the demo cluster needs root; try 'make demo-apiserver'"

mkdir -p "$FERRY_CACHE/logs"
FERRY_LOG="$FERRY_CACHE/logs/demo-$(date +%Y%m%d-%H%M%S).log"
export FERRY_LOG
: >"$FERRY_LOG"
ln -sfn "$(basename "$FERRY_LOG")" "$FERRY_CACHE/logs/demo.log"
# The last five runs' logs are kept.
ls -1t "$FERRY_CACHE"/logs/demo-*.log | tail -n +6 | xargs -r rm -f
# Progress lines go to the terminal through descriptor 3, also from cluster-up, whose own
# output goes to the log.
exec 3>&1
export FERRY_PROGRESS_FD=3
tmp=$(mktemp -d)

on_exit() {
  local rc=$?
  rm -rf "$tmp"
  [ $rc -eq 0 ] && return
  {
    printf '\nThe demo failed (exit %d).\n' $rc
    if [ -z "${SLOW_STEP_SHOWED_LOG:-}" ]; then
      echo "Last lines of its log:"
      tail -n 20 "$FERRY_LOG" | sed 's/^/  | /'
    fi
    printf 'Full log: %s\n' "$FERRY_LOG"
  } >&2
}
trap on_exit EXIT

# The image reference is the last line ferry_image prints; the rest goes to the log.
build_image() { ferry_image >"$tmp/image"; cat "$tmp/image"; }

main() {
  echo "Details of every step go to $FERRY_LOG"

  chapter "Bringing up a real single-node cluster (kubelet, containerd, registry, git server)"
  "$here/cluster/up.sh" >>"$FERRY_LOG" 2>&1
  # Written by cluster-up at run time; nothing for shellcheck to follow.
  # shellcheck source=/dev/null
  source "$E2E_DIR/env"
  show kubectl get nodes -o wide

  chapter "Building Ferry's image and installing it with one kubectl apply"
  slow_step "building Ferry (static release binary) and its image" build_image
  image=$(tail -n1 "$tmp/image")
  echo "image: $image"
  slow_step "installing Ferry (kubectl apply of manifests/crds.yaml and manifests/ferry.yaml) and waiting until it is Ready" \
    install_ferry "$image"
  show kubectl -n ferry-system get pods -o wide

  STORY_HINT="Ferry's log: kubectl -n ferry-system logs deployment/ferry; the demo's log: $FERRY_LOG"
  tell_story

  cat <<EOF

Ferry keeps running in the cluster. Explore with:
  source $E2E_DIR/env
  kubectl -n $STORY_NS describe application shop
  kubectl explain application.spec.build
  kubectl -n ferry-system logs deployment/ferry
Run it again with make demo (the cluster is reused); remove everything with: make demo-down
EOF
}

main "$@"
