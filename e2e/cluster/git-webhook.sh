#!/usr/bin/env bash
# Points a repository of the e2e git server at a webhook: every push that changes a ref is then
# POSTed to URL as a GitHub-style push event, signed with SECRET (X-Hub-Signature-256) if given.
# Creates the (bare, empty) repository if it does not exist yet.
#
#   e2e/cluster/git-webhook.sh REPO URL [SECRET]     # REPO without .git, e.g. demo-app
#   e2e/cluster/git-webhook.sh REPO ""               # remove the webhook
#
# The git server runs in the node's network namespace: URL may be a ClusterIP Service, a pod IP
# or an address on the node; the host's own loopback is not reachable from there.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

[ $# -ge 2 ] && [ $# -le 3 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
# The names the git server accepts (gitserver/main.go, repoName).
seg='[A-Za-z0-9][A-Za-z0-9._-]{0,63}'
[[ "$1" =~ ^$seg(/$seg){0,2}$ ]] || die "bad repository name '$1' (letters, digits, '.', '_', '-')"
repo="$E2E_DIR/git/$1.git"
[ -d "$repo" ] || git init --quiet --bare --initial-branch=main "$repo"
if [ -z "$2" ]; then
  git --git-dir "$repo" config --unset-all ferry.webhook.url || true
  git --git-dir "$repo" config --unset-all ferry.webhook.secret || true
  exit 0
fi
git --git-dir "$repo" config ferry.webhook.url "$2"
if [ -n "${3:-}" ]; then
  git --git-dir "$repo" config ferry.webhook.secret "$3"
else
  git --git-dir "$repo" config --unset-all ferry.webhook.secret || true
fi
# Not the URL: it may carry a token.
echo "webhook set for $GIT_URL/$1.git${3:+ (signed)}"
