#!/bin/sh
# Runs in a build pod of the toolbox image (busybox, git, curl). Clones $REPO, makes a one-layer
# image of it (busybox + the repository's run.sh) and pushes it to $REGISTRY/$IMAGE through the
# registry's HTTP API (OCI distribution spec: blob upload POST + PUT, then the manifest PUT).
# Last line: "pushed REGISTRY/IMAGE@sha256:... commit COMMIT".
set -eu
git clone --quiet "$REPO" /tmp/src
commit=$(git -C /tmp/src rev-parse HEAD)
tag=$(echo "$commit" | cut -c1-12)

root=/tmp/rootfs
mkdir -p "$root/bin" "$root/app"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cp /tmp/src/run.sh "$root/app/run.sh"
echo "$commit" >"$root/app/COMMIT"
tar -C "$root" -cf /tmp/layer.tar .

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
layer=$(sha /tmp/layer.tar)
printf '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/sh","/app/run.sh"],"User":"65532:65532"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$layer" >/tmp/config.json
config=$(sha /tmp/config.json)

base="http://$REGISTRY/v2/$IMAGE"
upload() { # upload FILE DIGEST
  if curl -fs -o /dev/null -I "$base/blobs/sha256:$2"; then return 0; fi
  loc=$(curl -fsS -X POST -o /dev/null -D - "$base/blobs/uploads/" |
    tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
  case "$loc" in /*) loc="http://$REGISTRY$loc" ;; esac
  case "$loc" in *\?*) sep='&' ;; *) sep='?' ;; esac
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$1" \
    "$loc${sep}digest=sha256:$2"
}
upload /tmp/layer.tar "$layer"
upload /tmp/config.json "$config"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$config" "$(size /tmp/config.json)" "$layer" "$(size /tmp/layer.tar)" >/tmp/manifest.json
digest=$(curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
  --data-binary @/tmp/manifest.json -D - -o /dev/null "$base/manifests/$tag" |
  tr -d '\r' | sed -n 's/^[Dd]ocker-[Cc]ontent-[Dd]igest: //p')
[ "$digest" = "sha256:$(sha /tmp/manifest.json)" ]
echo "pushed $REGISTRY/$IMAGE@$digest commit $commit"
