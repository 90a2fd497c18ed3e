# shellcheck shell=bash
# Helpers to make container images without Docker (sourced, not run).
#
# An image here is a root filesystem directory turned into one gzip layer, written as an OCI
# image layout (oci-layout, index.json, blobs/sha256/...) and pushed with skopeo. Tar and gzip run
# with fixed timestamps, owners and order, so the same input gives the same digest every time.

# oci_push ROOTFS REF [--entrypoint JSON] [--cmd JSON] [--user U] [--workdir D] [--env K=V]...
# Prints the pushed reference with its digest (REF@sha256:...) on stdout.
oci_push() {
  local rootfs=$1 ref=$2; shift 2
  local entrypoint=null cmd=null user="" workdir=/
  local env=("PATH=/usr/local/bin:/usr/bin:/bin")
  while [ $# -gt 0 ]; do
    case "$1" in
      --entrypoint) entrypoint=$2; shift 2 ;;
      --cmd) cmd=$2; shift 2 ;;
      --user) user=$2; shift 2 ;;
      --workdir) workdir=$2; shift 2 ;;
      --env) env+=("$2"); shift 2 ;;
      *) echo "oci_push: unknown option $1" >&2; return 2 ;;
    esac
  done

  local layout; layout=$(mktemp -d)
  mkdir -p "$layout/blobs/sha256"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=posix \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -C "$rootfs" -cf "$layout/layer.tar" .
  local diff_id; diff_id=$(sha256sum "$layout/layer.tar" | cut -d' ' -f1)
  gzip -n -6 "$layout/layer.tar"
  local layer_digest layer_size
  layer_digest=$(sha256sum "$layout/layer.tar.gz" | cut -d' ' -f1)
  layer_size=$(stat -c %s "$layout/layer.tar.gz")
  mv "$layout/layer.tar.gz" "$layout/blobs/sha256/$layer_digest"

  local env_json; env_json=$(printf '%s\n' "${env[@]}" | jq -R . | jq -s .)
  jq -cn --argjson ep "$entrypoint" --argjson cmd "$cmd" --arg user "$user" \
    --arg wd "$workdir" --argjson env "$env_json" --arg diff "sha256:$diff_id" '{
      architecture: "amd64", os: "linux",
      config: ({Env: $env, WorkingDir: $wd}
        + (if $ep == null then {} else {Entrypoint: $ep} end)
        + (if $cmd == null then {} else {Cmd: $cmd} end)
        + (if $user == "" then {} else {User: $user} end)),
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created_by: "ferry e2e/images"}]
    }' >"$layout/config.json"
  local config_digest config_size
  config_digest=$(sha256sum "$layout/config.json" | cut -d' ' -f1)
  config_size=$(stat -c %s "$layout/config.json")
  mv "$layout/config.json" "$layout/blobs/sha256/$config_digest"

  jq -cn --arg cd "sha256:$config_digest" --argjson cs "$config_size" \
    --arg ld "sha256:$layer_digest" --argjson ls "$layer_size" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $ld, size: $ls}]
    }' >"$layout/manifest.json"
  local manifest_digest manifest_size
  manifest_digest=$(sha256sum "$layout/manifest.json" | cut -d' ' -f1)
  manifest_size=$(stat -c %s "$layout/manifest.json")
  mv "$layout/manifest.json" "$layout/blobs/sha256/$manifest_digest"

  local tag=${ref##*:}
  jq -cn --arg md "sha256:$manifest_digest" --argjson ms "$manifest_size" --arg tag "$tag" '{
      schemaVersion: 2,
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md,
        size: $ms, annotations: {"org.opencontainers.image.ref.name": $tag}}]
    }' >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

  # Our own signature policy, so the host's /etc/containers/policy.json does not matter.
  echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$layout/policy.json"
  skopeo --policy "$layout/policy.json" copy --quiet --dest-tls-verify=false \
    "oci:$layout:$tag" "docker://$ref" >&2
  rm -rf "$layout"
  echo "$ref@sha256:$manifest_digest"
}

# rootfs_base DIR — users, groups and the directories every image here has.
# uid 65532 is "nonroot" (the distroless convention), 65535 the pause container's user.
rootfs_base() {
  local dir=$1
  mkdir -p "$dir"/{bin,etc,tmp,home/nonroot,root}
  chmod 1777 "$dir/tmp"
  chmod 0777 "$dir/home/nonroot" # files are owned by 0 in the layer; let uid 65532 write here
  cat >"$dir/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
nonroot:x:65532:65532:nonroot:/home/nonroot:/bin/false
EOF
  cat >"$dir/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  echo 'hosts: files dns' >"$dir/etc/nsswitch.conf"
}

# rootfs_busybox DIR — Debian's static busybox with a symlink per applet (sh, httpd, nc, ...).
rootfs_busybox() {
  local dir=$1
  rootfs_base "$dir"
  mkdir -p "$dir/usr/bin" "$dir/sbin" "$dir/usr/sbin"
  cp /bin/busybox "$dir/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [ -e "$dir/bin/$applet" ] || ln -s busybox "$dir/bin/$applet"
  done
}

# rootfs_add_elf DIR FILE [DEST] — copy a dynamically linked program and every library ldd
# names for it, at the same paths, so it runs in an image without a distribution.
rootfs_add_elf() {
  local dir=$1 file=$2 dest=${3:-$2}
  mkdir -p "$dir/$(dirname "$dest")"
  cp -L "$file" "$dir/$dest"
  local lib
  for lib in $(ldd "$file" | grep -o '/[^ ]*'); do
    [ -e "$dir/$lib" ] && continue
    mkdir -p "$dir/$(dirname "$lib")"
    cp -L "$lib" "$dir/$lib"
  done
}
