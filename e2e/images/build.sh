#!/usr/bin/env bash
# Builds the e2e cluster's images from this machine's own files (no image is ever pulled from a
# public registry) and pushes them to the local registry:
#
#   $REGISTRY/pause:3.10       the pod sandbox: a static C program (pause.c)
#   $REGISTRY/busybox:1.35     Debian's busybox-static (sh, httpd, nc, sha256sum, tar, ...)
#   $REGISTRY/toolbox:1        busybox + git (with http transport) + curl + skopeo, for build pods
#
#   e2e/images/build.sh [REGISTRY]     # default: the cluster's registry, 10.211.0.2:5000
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../cluster/lib.sh"
source "$here/lib.sh"
registry=${1:-$REGISTRY}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# pause: uid 65535 as upstream's pause image.
mkdir -p "$work/pause"
rootfs_base "$work/pause"
gcc -Os -Wall -Werror -static -o "$work/pause/pause" "$here/pause.c"
strip "$work/pause/pause"
oci_push "$work/pause" "$registry/pause:3.10" --entrypoint '["/pause"]' --user 65535:65535

# busybox: the base for test workloads.
rootfs_busybox "$work/busybox"
oci_push "$work/busybox" "$registry/busybox:1.35" --cmd '["sh"]'

# toolbox: what a build pod needs to fetch a commit and publish an image.
rootfs_busybox "$work/toolbox"
rootfs_add_elf "$work/toolbox" /usr/bin/git
rootfs_add_elf "$work/toolbox" /usr/lib/git-core/git-remote-http
ln -s git-remote-http "$work/toolbox/usr/lib/git-core/git-remote-https"
mkdir -p "$work/toolbox/usr/share/git-core"
cp -r /usr/share/git-core/templates "$work/toolbox/usr/share/git-core/"
rootfs_add_elf "$work/toolbox" /usr/bin/curl
rootfs_add_elf "$work/toolbox" /usr/bin/skopeo
mkdir -p "$work/toolbox/etc/containers"
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/toolbox/etc/containers/policy.json"
oci_push "$work/toolbox" "$registry/toolbox:1" --cmd '["sh"]' --env HOME=/tmp
