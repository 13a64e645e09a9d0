#!/usr/bin/env bash
# skaffold's custom builder on this machine (skaffold.yaml, profiles `local-images` and `node`):
#   scripts/skaffold-build.sh NAME [--load-into-node]
# NAME is a scripts/build-images.sh image name (operator, ingestion, spark-job, ...). skaffold sets
# $IMAGE (the name:tag to produce) and $PUSH_IMAGE (false: there is no registry here).
#
# Why not skaffold's docker builder: the images install only what the host fetched (wheelhouse,
# connector jars, Go binaries), because HTTPS from inside a container fails here; that material is
# not in the repo, and build-images.sh stages it into a build context of its own with the local
# Debian base as a build argument. So skaffold calls build-images.sh (which rebuilds only what
# changed), then this tags the versioned image it built as $IMAGE for skaffold to find.
# --load-into-node: also import $IMAGE into the dev node cluster's containerd (the socket recorded
# in <work dir>/state.json of `cryptopipe dev cluster up --node`; work dir
# $CRYPTOPIPE_DEV_CLUSTER_DIR, default $CRYPTOPIPE_CACHE/dev-cluster), for `skaffold run -p node`.
# Docker: the daemon $DOCKER_HOST names (skaffold itself inspects the image there), e.g.
#   export "$(scripts/build-images.sh --start-daemon | grep '^DOCKER_HOST=')"
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"
SCRIPT_NAME=skaffold-build
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

name="${1:?usage: scripts/skaffold-build.sh NAME [--load-into-node]}"
load="${2:-}"
[ -n "${IMAGE:-}" ] || die "\$IMAGE is not set (skaffold's custom builder sets it)"
[ "${PUSH_IMAGE:-false}" != true ] || die "no registry here: skaffold.yaml's build.local.push must be false"
docker info >/dev/null 2>&1 ||
  die "no Docker daemon answers at ${DOCKER_HOST:-the default socket}: export \"\$(scripts/build-images.sh --start-daemon | grep '^DOCKER_HOST=')\""

BUILD="$REPO/scripts/build-images.sh"
built="$("$BUILD" --list | awk -v n="$name" '$1 == n { print $2 }')"
[ -n "$built" ] || die "unknown image '$name' (scripts/build-images.sh --list names them)"
"$BUILD" --keep-daemon "$name"
docker tag "$built" "$IMAGE"
say "$built tagged $IMAGE"

if [ "$load" = --load-into-node ]; then
  state="${CRYPTOPIPE_DEV_CLUSTER_DIR:-$CRYPTOPIPE_CACHE/dev-cluster}/state.json"
  [ -f "$state" ] || die "no dev cluster state at $state: run cryptopipe dev cluster up --node first"
  sock="$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get("node", {}).get("containerd_socket", ""))' "$state")"
  [ -S "$sock" ] || die "the dev cluster of $state has no running node (containerd socket '$sock')"
  # skaffold deploys a local image it did not push as NAME:<image id> (it tags it so after this
  # returns): the node must hold that reference too, so it is tagged here already
  id="$(docker image inspect -f '{{.Id}}' "$IMAGE")"
  by_id="${IMAGE%:*}:${id#sha256:}"
  docker tag "$IMAGE" "$by_id"
  docker save "$IMAGE" "$by_id" | ctr -a "$sock" -n k8s.io images import - >/dev/null || die "ctr images import of $IMAGE failed"
  say "$IMAGE and $by_id -> the node's containerd ($sock)"
fi
