# shellcheck shell=bash
# Shared by e2e/install.sh and e2e/demo.sh: build Ferry's static binary and image, install it
# into the cluster with one `kubectl apply` or with `helm install`, grant it a tenant namespace.
# Expects e2e/cluster/lib.sh to be sourced (for `kc`, `die`, $KUBECONFIG_ADMIN) and $root to be
# the repository root.

# Builds the static (musl) ferry binary and prints its path.
static_ferry() {
  rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
    || rustup target add x86_64-unknown-linux-musl >&2
  # ring (TLS) has C parts: the musl target needs musl-gcc.
  if ! command -v musl-gcc > /dev/null; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2
  fi
  # shellcheck disable=SC2154 # $root is set by the sourcing script (see above)
  (cd "$root" && cargo build --release --locked --quiet --target x86_64-unknown-linux-musl >&2) \
    || { echo "building the static ferry binary failed" >&2; return 1; }
  local target_dir
  target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
  echo "$target_dir/x86_64-unknown-linux-musl/release/ferry"
}

# Builds the binary, wraps it in an image in the cluster's registry, prints the reference.
# A failed build stops here: `$(...)` does not pass `set -e` on, so it is checked by hand.
ferry_image() {
  local binary
  binary=$(static_ferry) || return 1
  [ -x "$binary" ] || { echo "no ferry binary at $binary" >&2; return 1; }
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

# ready_line NAMESPACE DEPLOYMENT: one line saying how many of the Deployment's replicas are Ready.
ready_line() {
  local ready want
  ready=$(kc -n "$1" get deployment "$2" -o jsonpath='{.status.readyReplicas}')
  want=$(kc -n "$1" get deployment "$2" -o jsonpath='{.spec.replicas}')
  echo "deployment $1/$2 Ready: ${ready:-0}/$want replicas"
  [ "${ready:-0}" = "$want" ]
}

# e2e_scenarios [SUITE|SUITE/SCENARIO...]: the end-to-end scenarios written in Rust
# (tests/e2e), against this cluster and the Ferry installed in ferry-system.
e2e_scenarios() {
  (cd "$root" && FERRY_E2E_KUBECONFIG="$KUBECONFIG_ADMIN" FERRY_E2E_NODE_IP="$NODE_IP" \
    FERRY_E2E_NETNS="$NETNS" FERRY_E2E_SYSTEM=ferry-system \
    cargo test --locked --quiet --test e2e -- "$@")
}

# grant_tenant NAMESPACE [SERVICEACCOUNT-NAMESPACE:NAME [CLUSTERROLE]]: lets Ferry read the
# Secrets of NAMESPACE, with the one command the README and manifests/ferry.yaml document.
grant_tenant() {
  local account=${2:-ferry-system:ferry} role=${3:-ferry-tenant}
  kc create rolebinding ferry-tenant --clusterrole="$role" --serviceaccount="$account" \
    -n "$1" --dry-run=client -o yaml | kc apply -f -
}

# grant_deployer NAMESPACE [SERVICEACCOUNT-NAMESPACE:NAME [CLUSTERROLE]]: lets Ferry write the
# Deployments and Services it runs applications as in NAMESPACE, with the one command the
# README and manifests/ferry.yaml document.
grant_deployer() {
  local account=${2:-ferry-system:ferry} role=${3:-ferry-deployer}
  kc create rolebinding ferry-deployer --clusterrole="$role" --serviceaccount="$account" \
    -n "$1" --dry-run=client -o yaml | kc apply -f -
}

# The helm binary, built from its Go module once and cached by version.
helm_bin() {
  echo "$("$root/e2e/build-helm.sh")/helm"
}

# install_ferry_helm IMAGE RELEASE NAMESPACE [HELM-ARGS...]: the chart, with IMAGE, installed as
# RELEASE into NAMESPACE; waits until the controller is Ready. The namespace enforces the
# restricted Pod Security Standard, as the one in manifests/ferry.yaml does (the chart, like
# most, leaves creating its namespace to the installer).
install_ferry_helm() {
  local image=$1 release=$2 namespace=$3 helm
  shift 3
  helm=$(helm_bin)
  kc create namespace "$namespace" --dry-run=client -o yaml | kc apply -f -
  kc label namespace "$namespace" --overwrite pod-security.kubernetes.io/enforce=restricted
  "$helm" --kubeconfig "$KUBECONFIG_ADMIN" install "$release" "$root/charts/ferry" \
    --namespace "$namespace" --set image.repository="${image%:*}" --set image.tag="${image##*:}" \
    "$@" --wait --timeout 180s
  kc -n "$namespace" rollout status "deployment/$release" --timeout=180s
}

# uninstall_ferry_helm RELEASE NAMESPACE: `helm uninstall` (if installed), waiting until its
# objects are gone. Helm leaves the CRDs (it never deletes them) and the namespace.
uninstall_ferry_helm() {
  "$(helm_bin)" --kubeconfig "$KUBECONFIG_ADMIN" uninstall "$1" --namespace "$2" \
    --ignore-not-found --wait --timeout 120s
}

# example FILE: examples/FILE with its placeholder hosts (git.ferry.test, registry.ferry.test)
# replaced by the cluster's git server and registry ($GIT_URL, $REGISTRY from cluster/lib.sh).
example() {
  sed -e "s|http://git.ferry.test|$GIT_URL|g" -e "s|registry.ferry.test|$REGISTRY|g" "$root/examples/$1"
}

# push_example_app REPO: examples/shop-app as the one commit of branch main of REPO on the
# cluster's git server (replacing what was there), so the example Application has a branch to
# build. Prints the commit.
push_example_app() {
  local work; work=$(mktemp -d)
  cp -r "$root/examples/shop-app/." "$work/"
  git -C "$work" init --quiet --initial-branch=main
  git -C "$work" add -A
  git -C "$work" -c user.name=Ferry -c user.email=demo@ferry.invalid commit --quiet -m "The shop, first version"
  git -C "$work" push --quiet --force "$GIT_URL/$1.git" main
  git -C "$work" rev-parse HEAD
  rm -rf "$work"
}
