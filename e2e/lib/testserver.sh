# shellcheck shell=bash
# The rollout scenarios' test server: a tiny HTTP server image family built from the harness's
# busybox (sourced, not run; needs e2e/cluster/lib.sh and e2e/images/lib.sh sourced first).
#
# Every image serves on port 8080, as uid 65532, under the restricted Pod Security Standard:
#   /         200, unless the behaviour says otherwise
#   /healthz  200, unless the behaviour says otherwise
#   /ready    200, unless the behaviour says otherwise
# and every answer's body is one line `version=V behaviour=B path=P code=C pod=HOSTNAME`, so a
# client can tell which release answered. The behaviour is baked into each image (/srv/behaviour),
# so each behaviour of each version is its own digest, hence its own Release:
#   ok               always 200
#   never-ready      /ready answers 503 forever; / and /healthz answer 200
#   crash            the process exits 1 at start
#   fail-after N     200 for N seconds after the start, then 500 on / and /healthz
#   slow MS          every /healthz answer is delayed by MS milliseconds (busybox usleep)
# plus testserver_missing: a reference into the same repository with a digest the registry
# does not have (for an image pull error).
#
# Why not busybox httpd with CGI: Debian's busybox httpd runs CGI only under /cgi-bin/ (and `/`
# through /cgi-bin/index.cgi) and has no proxy or rewrite compiled in, so it cannot answer
# /healthz or /ready from a script. `nc -ll -e` (busybox) forks the handler per connection, so
# the server answers requests concurrently, and a slow answer holds up no other.
#
# Functions print the pushed reference, REPOSITORY@sha256:...:
#   testserver_ok VERSION
#   testserver_never_ready VERSION
#   testserver_crash VERSION
#   testserver_fail_after VERSION SECONDS
#   testserver_slow VERSION MILLISECONDS
#   testserver_missing            (pushes nothing)
#   testserver_image BEHAVIOUR VERSION [ARGUMENT]   (what the others call)
# The repository is $TESTSERVER_REPO (default $REGISTRY/ferry-e2e/testserver); each image is
# also tagged VERSION-BEHAVIOUR[-ARGUMENT] there, for people reading the registry. Nothing is
# kept in the repository or a cache: every call builds in a temporary directory.

TESTSERVER_REPO=${TESTSERVER_REPO:-$REGISTRY/ferry-e2e/testserver}

# The container's entrypoint: PID 1, a shell that starts the listener and ends it on SIGTERM
# (a PID 1 without a handler ignores SIGTERM, and every pod would take its whole grace period to
# stop). The behaviour, version, pod name and start time go to the handlers through the
# environment: the root filesystem may be read-only.
_testserver_start() {
  cat <<'EOF'
#!/bin/sh
read -r BEHAVIOUR ARGUMENT </srv/behaviour
read -r VERSION </srv/version
echo "testserver version $VERSION behaviour '$BEHAVIOUR${ARGUMENT:+ $ARGUMENT}' starting"
case $BEHAVIOUR in
  crash) echo "testserver: crashing at start, as told"; exit 1 ;;
esac
STARTED=$(date +%s)
POD=$(hostname)
export BEHAVIOUR ARGUMENT VERSION STARTED POD
nc -ll -p 8080 -e /srv/serve &
listener=$!
trap 'echo "testserver: SIGTERM, stopping"; kill $listener; exit 0' TERM INT
wait $listener
echo "testserver: the listener exited"
exit 1
EOF
}

# One connection: reads the request line and the headers (all of them: closing a socket with
# unread data sends a reset, and the client could lose the answer), then answers. It starts no
# process of its own (the start script read the files and the pod's name once; only fail-after
# asks `date`): with the scenarios side by side on 2 cores, every fork per request is latency
# the HTTP checks count against their timeout.
_testserver_serve() {
  cat <<'EOF'
#!/bin/sh
cr=$(printf '\r')
read -r method path protocol || exit 0
while IFS= read -r line; do
  line=${line%"$cr"}
  [ -n "$line" ] || break
done
path=${path%%\?*}
code=200
case $path in
  / | /healthz | /ready) ;;
  *) code=404 ;;
esac
case $BEHAVIOUR in
  never-ready) [ "$path" != /ready ] || code=503 ;;
  fail-after)
    if [ "$code" = 200 ] && [ "$path" != /ready ] && [ $(($(date +%s) - STARTED)) -ge "$ARGUMENT" ]; then
      code=500
    fi ;;
  slow) [ "$path" != /healthz ] || usleep $((ARGUMENT * 1000)) ;;
esac
case $code in
  200) text=OK ;; 404) text='Not Found' ;; 500) text='Internal Server Error' ;;
  503) text='Service Unavailable' ;;
esac
body="version=$VERSION behaviour=$BEHAVIOUR path=$path code=$code pod=$POD"
printf 'HTTP/1.0 %s %s\r\nContent-Type: text/plain\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s\n' \
  "$code" "$text" $((${#body} + 1)) "$body"
EOF
}

# testserver_image BEHAVIOUR VERSION [ARGUMENT] — builds and pushes one image, prints its
# reference by digest.
testserver_image() {
  local behaviour=$1 version=$2 argument=${3:-}
  case $behaviour in
    ok | never-ready | crash) [ -z "$argument" ] || { echo "testserver: $behaviour takes no argument" >&2; return 2; } ;;
    fail-after | slow) [[ "$argument" =~ ^[0-9]+$ ]] || { echo "testserver: $behaviour needs a number, got '$argument'" >&2; return 2; } ;;
    *) echo "testserver: unknown behaviour '$behaviour'" >&2; return 2 ;;
  esac
  local work ref
  work=$(mktemp -d)
  rootfs_busybox "$work/rootfs" >&2
  mkdir -p "$work/rootfs/srv"
  echo "$behaviour${argument:+ $argument}" >"$work/rootfs/srv/behaviour"
  echo "$version" >"$work/rootfs/srv/version"
  _testserver_start >"$work/rootfs/srv/start"
  _testserver_serve >"$work/rootfs/srv/serve"
  chmod 0755 "$work/rootfs/srv/start" "$work/rootfs/srv/serve"
  ref=$(oci_push "$work/rootfs" "$TESTSERVER_REPO:$version-$behaviour${argument:+-$argument}" \
    --entrypoint '["/srv/start"]' --user 65532:65532 --workdir /srv) || { rm -rf "$work"; return 1; }
  rm -rf "$work"
  # REPOSITORY:TAG@sha256:... -> REPOSITORY@sha256:... (a Release names its image by digest).
  local digest=${ref##*@}
  echo "$TESTSERVER_REPO@$digest"
}

testserver_ok() { testserver_image ok "$1"; }
testserver_never_ready() { testserver_image never-ready "$1"; }
testserver_crash() { testserver_image crash "$1"; }
testserver_fail_after() { testserver_image fail-after "$1" "$2"; }
testserver_slow() { testserver_image slow "$1" "$2"; }

# testserver_missing — a reference in $TESTSERVER_REPO whose digest no image has (random), so a
# pod naming it fails with ErrImagePull / ImagePullBackOff.
testserver_missing() {
  echo "$TESTSERVER_REPO@sha256:$(head -c 32 /dev/urandom | sha256sum | cut -d' ' -f1)"
}
