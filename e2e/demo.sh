#!/usr/bin/env bash
# `make demo`: Ferry on the real single-node cluster (docs/cluster.md), installed the way a user
# installs it, telling the story of e2e/lib/story.sh. Needs root. Everything stays up to explore;
# `make demo-down` (= make cluster-down) removes it. Without root: `make demo-apiserver`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
source "$here/cluster/lib.sh"
source "$here/lib/ferry.sh"
source "$here/lib/story.sh"

[ "$(id -u)" = 0 ] || die "the demo cluster needs root; try 'make demo-apiserver'"

chapter "Bringing up a real single-node cluster (kubelet, containerd, registry, git server)"
"$here/cluster/up.sh" | tail -n 3
source "$E2E_DIR/env"
show kubectl get nodes -o wide

chapter "Building Ferry's image and installing it with one kubectl apply"
image=$(ferry_image)
echo "image: $image"
install_ferry "$image"
show kubectl -n ferry-system get pods -o wide

tell_story

cat <<EOF2

Ferry keeps running in the cluster. Explore with:
  source $E2E_DIR/env
  kubectl -n team-a describe application shop
  kubectl explain application.spec.build
  kubectl -n ferry-system logs deployment/ferry
Remove everything with: make demo-down
EOF2
