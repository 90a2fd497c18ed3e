#!/usr/bin/env bash
# Wraps a static binary (the ferry operator, from `cargo build --target x86_64-unknown-linux-musl`)
# into an image on a minimal root filesystem — the binary, /etc/passwd and /etc/group with the
# non-root user 65532, a writable /tmp, the CA certificates (Debian's bundle: Ferry's HTTP
# clients, for git servers and registries, load the system's roots and refuse to start without
# any, even for plain HTTP) — and pushes it to the cluster's registry.
#
#   e2e/images/ferry-image.sh PATH-TO-STATIC-BINARY [TAG]
#
# TAG defaults to the first 12 hex digits of the binary's sha256, so a new build gets a new tag.
# Env: FERRY_IMAGE_REGISTRY (default: the e2e cluster's registry, 10.211.0.2:5000),
#      FERRY_IMAGE_NAME (default: ferry).
# The last line printed is the pushed reference by digest, REGISTRY/NAME:TAG@sha256:...
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../cluster/lib.sh"
source "$here/lib.sh"

[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
binary=$1
[ -f "$binary" ] || die "$binary: no such file"
# A static binary has no program interpreter (PT_INTERP); anything else needs a libc the image
# does not have. musl static-pie binaries pass this test.
if readelf -lW "$binary" | grep -q 'Requesting program interpreter'; then
  die "$binary is dynamically linked; build it static (x86_64-unknown-linux-musl)"
fi
tag=${2:-$(sha256sum "$binary" | cut -c1-12)}
registry=${FERRY_IMAGE_REGISTRY:-$REGISTRY}
name=${FERRY_IMAGE_NAME:-ferry}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs_base "$work/rootfs"
rm -rf "$work/rootfs/bin" "$work/rootfs/root" # no shell, nothing for root
mkdir -p "$work/rootfs/usr/local/bin"
install -m 0755 "$binary" "$work/rootfs/usr/local/bin/ferry"
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ca-certificates >&2
fi
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
oci_push "$work/rootfs" "$registry/$name:$tag" \
  --entrypoint '["/usr/local/bin/ferry"]' --user 65532:65532 --workdir /home/nonroot
