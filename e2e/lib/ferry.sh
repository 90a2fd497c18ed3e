# Shared by e2e/install.sh and e2e/demo.sh: build Ferry's static binary and image, install it
# into the cluster with one `kubectl apply`. Expects e2e/cluster/lib.sh to be sourced (for `kc`,
# `die`) and $root to be the repository root.

# Builds the static (musl) ferry binary and prints its path.
static_ferry() {
  rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl >&2
  # ring (TLS) has C parts: the musl target needs musl-gcc.
  if ! command -v musl-gcc > /dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2
  fi
  (cd "$root" && cargo build --release --locked --quiet --target x86_64-unknown-linux-musl >&2)
  local target_dir
  target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  echo "$target_dir/x86_64-unknown-linux-musl/release/ferry"
}

# Builds the binary, wraps it in an image in the cluster's registry, prints the reference.
ferry_image() {
  local binary
  binary=$(static_ferry)
  "$root/e2e/images/ferry-image.sh" "$binary" | tail -n1
}

# install_ferry IMAGE: the committed install manifests, with IMAGE, in one `kubectl apply`;
# waits until the controller is Ready (its /readyz passes once every cache has synced).
install_ferry() {
  { cat "$root/manifests/crds.yaml"; echo ---
    sed "s|image: ghcr.io/ferry-dev/ferry:0.1.0|image: $1|" "$root/manifests/ferry.yaml"
  } | kc apply -f -
  kc -n ferry-system rollout status deployment/ferry --timeout=180s
}
