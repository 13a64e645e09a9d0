#!/usr/bin/env bash
# Builds what one real Kubernetes node on this machine needs (`cryptopipe dev cluster up --node`),
# into $CRYPTOPIPE_CACHE/node (outside the repo):
#   1. Debian packages, apt-get installed when missing: docker.io (containerd 1.6 + runc; dockerd
#      for the image builds of later steps), containernetworking-plugins (/usr/lib/cni), iptables,
#      conntrack, nftables (`nft`: down deletes the iptables-nft tables up created), debootstrap
#      (local base images, later steps)
#   2. kubelet, kube-proxy, kube-scheduler  v1.34.4  Go build from a throwaway module, the same
#      go.mod and Go caches as scripts/build-control-plane.sh's kube-apiserver (shared packages are
#      build-cache hits)
#   3. coredns  v1.12.4  go install (its go.mod has no replace lines)
#   4. pause: a static C binary (gcc -static), and an image holding only it (FROM scratch, written
#      as a `docker save` archive without any daemon), for the node's containerd to import
#   5. the CoreDNS image, made the same way from the coredns binary (FROM scratch, user 65532)
# See ../shared/docs/infra-recipes.md section 10 for what worked on this kind of machine.
#
# scripts/bootstrap.sh runs it as its last step (not with --data-plane-only); it can also be run
# alone (as root, for step 1). Idempotent:
# each step writes a stamp holding its inputs once it succeeds and is skipped while it matches;
# binaries are built in a scratch folder and moved in, so a half-done step never looks done.
# Measured on 2 shared cores, with the control plane's Go build cache warm: see docs/cluster.md.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"
CACHE="$CRYPTOPIPE_CACHE"
LOGS="$CACHE/logs"
NODE="$CACHE/node"
BIN="$NODE/bin"
IMAGES="$NODE/images"

K8S_VERSION=1.34.4            # k8s.io/kubernetes: the mirror serves v1.34.0/.2/.3/.4 (not .1)
COREDNS_VERSION=v1.12.4
PAUSE_VERSION=3.10.1          # the sandbox image kubelet 1.34 expects: registry.k8s.io/pause:3.10.1
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_VERSION"
GO_MIN=1.24
APT_PACKAGES="docker.io containernetworking-plugins iptables conntrack nftables debootstrap"
# same list as scripts/build-control-plane.sh (see there, and infra-recipes.md section 1, for why)
K8S_STAGING="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
K8S_CMDS="kubelet kube-proxy kube-scheduler"

mkdir -p "$CACHE" "$LOGS" "$BIN" "$IMAGES"

say() { printf 'node: %s\n' "$*"; }
die() { printf 'node: ERROR: %s\n' "$*" >&2; exit 1; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }
run() {
  local logf="$1"; shift
  printf '$ %s\n' "$*" >>"$logf"
  if ! "$@" >>"$logf" 2>&1; then
    tail -n 40 "$logf" >&2
    die "failed: $* (full log: $logf)"
  fi
}
sizes() { local f; for f in "$@"; do printf '%s %s  ' "$(basename "$f")" "$(du -h "$f" | cut -f1)"; done; }

# scratch_image ARCHIVE BINARY REF USER: an image of one layer holding only BINARY (at /NAME, its
# entrypoint), as the archive `docker save` writes (manifest.json with RepoTags), which
# `ctr images import` reads. No daemon, no registry; byte-reproducible (fixed mtimes and owners),
# so its digest only changes when the binary does. Used for pause and CoreDNS.
scratch_image() {
  python3 - "$@" <<'EOF'
import hashlib, io, json, os, sys, tarfile
archive, binary, ref, user = sys.argv[1:5]
name = os.path.basename(binary)
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    info = tarfile.TarInfo(name)
    data = open(binary, "rb").read()
    info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o755, 0, 0, 0
    tar.addfile(info, io.BytesIO(data))
layer_bytes = layer.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
config = {
    "architecture": "amd64",
    "os": "linux",
    "created": "1970-01-01T00:00:00Z",
    "config": {"Entrypoint": ["/" + name], "User": user, "WorkingDir": "/"},
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "cryptopipe scripts/build-node.sh"}],
}
config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
layer_name = diff_id.split(":")[1] + "/layer.tar"
manifest = [{"Config": config_name, "RepoTags": [ref], "Layers": [layer_name]}]
with tarfile.open(archive, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    for member, blob in (
        (config_name, config_bytes),
        (layer_name, layer_bytes),
        ("manifest.json", json.dumps(manifest).encode()),
    ):
        info = tarfile.TarInfo(member)
        info.size, info.mode, info.mtime = len(blob), 0o644, 0
        tar.addfile(info, io.BytesIO(blob))
EOF
}

exec 7>"$CACHE/.node.lock"
flock -w 3600 7 || die "another build holds $CACHE/.node.lock"

# --- 1. Debian packages ---------------------------------------------------------------------------
APT_LOG="$LOGS/node-apt.log"
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  command -v apt-get >/dev/null || die "missing packages:$missing, and no apt-get to install them"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "apt-get install$missing (log $APT_LOG)"
  $SUDO apt-get update -qq >>"$APT_LOG" 2>&1 || true
  # shellcheck disable=SC2086
  run "$APT_LOG" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing
else
  say "packages: installed ($APT_PACKAGES)"
fi

# --- Go -------------------------------------------------------------------------------------------
need_go() {
  command -v go >/dev/null || die "no go on PATH: the node is built with Go >= $1"
  local v; v="$(go env GOVERSION | sed 's/^go//')"
  version_ge "$v" "$1" || die "Go >= $1 needed, found $v"
}
gobuild() {
  local dir="$1" logf="$2"; shift 2
  (cd "$dir" && run "$logf" env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" nice -n 19 "$@")
}
GO_VERSION="$(command -v go >/dev/null && go env GOVERSION || echo none)"
all_there() { local c; for c in "$@"; do [ -x "$BIN/$c" ] || return 1; done; }

# --- 2. kubelet, kube-proxy, kube-scheduler ----------------------------------------------------------
K8S_LOG="$LOGS/node-k8s.log"
k8s_gomod() {
  local m s="v0.${K8S_VERSION#1.}"
  printf 'module local/k8sbins\n\ngo 1.24.0\n\n// as k8s.io/kubernetes go.mod: same GODEBUG defaults as upstream builds\ngodebug default=go1.24\n\n'
  printf 'require k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
  for m in $K8S_STAGING; do printf '\tk8s.io/%s => k8s.io/%s %s\n' "$m" "$m" "$s"; done
  printf ')\n'
}
k8s_key="k8s v$K8S_VERSION $K8S_CMDS $GO_VERSION $(k8s_gomod | sha256sum | cut -c1-16)"
# shellcheck disable=SC2086
if stamp_ok "$NODE/.stamp-k8s" "$k8s_key" && all_there $K8S_CMDS; then
  say "kubelet, kube-proxy, kube-scheduler: up to date (v$K8S_VERSION)"
else
  need_go "$GO_MIN"
  say "kubelet, kube-proxy, kube-scheduler: build v$K8S_VERSION (log $K8S_LOG)"
  rm -f "$NODE/.stamp-k8s" "$K8S_LOG"
  # its own module folder (build-control-plane.sh recreates its own), the same go.mod content and
  # the same Go caches: the packages the apiserver build compiled are cache hits
  src="$NODE/src/k8s"; rm -rf "$src" "$NODE/out-k8s"; mkdir -p "$src" "$NODE/out-k8s" "$CACHE/go/mod" "$CACHE/go/build"
  k8s_gomod >"$src/go.mod"
  began=$SECONDS
  gobuild "$src" "$K8S_LOG" go mod download -json "k8s.io/kubernetes@v$K8S_VERSION"
  pkgs=""; for c in $K8S_CMDS; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  # shellcheck disable=SC2086
  gobuild "$src" "$K8S_LOG" go get -tool $(for p in $pkgs; do printf '%s@v%s ' "$p" "$K8S_VERSION"; done)
  gobuild "$src" "$K8S_LOG" go mod download
  echo "modules resolved after $((SECONDS - began))s" >>"$K8S_LOG"
  major="${K8S_VERSION%%.*}" minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  # shellcheck disable=SC2086
  gobuild "$src" "$K8S_LOG" go build -trimpath -ldflags "$ld" -o "$NODE/out-k8s/" $pkgs
  for c in $K8S_CMDS; do
    "$NODE/out-k8s/$c" --version >>"$K8S_LOG" 2>&1 || die "built $c does not run (log $K8S_LOG)"
    mv -f "$NODE/out-k8s/$c" "$BIN/"
  done
  rmdir "$NODE/out-k8s"
  echo "took $((SECONDS - began))s" >>"$K8S_LOG"
  echo "$k8s_key" >"$NODE/.stamp-k8s"
  say "kube node binaries: built in $((SECONDS - began))s: $(sizes $(for c in $K8S_CMDS; do echo "$BIN/$c"; done))"
fi

# --- 3. CoreDNS -----------------------------------------------------------------------------------
DNS_LOG="$LOGS/node-coredns.log"
dns_key="coredns $COREDNS_VERSION $GO_VERSION"
if stamp_ok "$NODE/.stamp-coredns" "$dns_key" && [ -x "$BIN/coredns" ]; then
  say "coredns: up to date ($COREDNS_VERSION)"
else
  need_go "$GO_MIN"
  say "coredns: go install $COREDNS_VERSION (log $DNS_LOG)"
  rm -f "$NODE/.stamp-coredns" "$DNS_LOG"
  out="$NODE/out-coredns"; rm -rf "$out"; mkdir -p "$out"
  began=$SECONDS
  gobuild "$NODE" "$DNS_LOG" env GOBIN="$out" go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
  "$out/coredns" -version >>"$DNS_LOG" 2>&1 || die "built coredns does not run (log $DNS_LOG)"
  mv -f "$out/coredns" "$BIN/" && rmdir "$out"
  echo "took $((SECONDS - began))s" >>"$DNS_LOG"
  echo "$dns_key" >"$NODE/.stamp-coredns"
  say "coredns: built in $((SECONDS - began))s: $(sizes "$BIN/coredns")"
fi

# --- 4. pause binary + image ----------------------------------------------------------------------
PAUSE_LOG="$LOGS/node-pause.log"
PAUSE_C='/* The pod sandbox process: holds the namespaces, reaps orphans, exits on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) { printf("pause cryptopipe\n"); return 0; }
  if (getpid() != 1) fprintf(stderr, "pause: warning: not pid 1\n");
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_handler = die;
  if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0) return 1;
  sa.sa_handler = reap; sa.sa_flags = SA_NOCLDSTOP;
  if (sigaction(SIGCHLD, &sa, NULL) < 0) return 2;
  for (;;) pause();
}
'
pause_key="pause $PAUSE_IMAGE $(printf '%s' "$PAUSE_C" | sha256sum | cut -c1-16)"
PAUSE_TAR="$IMAGES/pause-$PAUSE_VERSION.tar"
if stamp_ok "$NODE/.stamp-pause" "$pause_key" && [ -x "$BIN/pause" ] && [ -f "$PAUSE_TAR" ]; then
  say "pause: up to date ($PAUSE_IMAGE)"
else
  command -v gcc >/dev/null || die "gcc needed for the pause binary (apt-get install gcc libc6-dev)"
  rm -f "$NODE/.stamp-pause" "$PAUSE_LOG"
  out="$NODE/out-pause"; rm -rf "$out"; mkdir -p "$out"
  printf '%s' "$PAUSE_C" >"$out/pause.c"
  run "$PAUSE_LOG" gcc -Os -static -Wall -o "$out/pause" "$out/pause.c"
  run "$PAUSE_LOG" strip "$out/pause"
  run "$PAUSE_LOG" "$out/pause" -v
  # The image: one layer holding /pause (see scratch_image)
  run "$PAUSE_LOG" scratch_image "$out/image.tar" "$out/pause" "$PAUSE_IMAGE" 65535:65535
  mv -f "$out/pause" "$BIN/pause" && mv -f "$out/image.tar" "$PAUSE_TAR" && rm -rf "$out"
  echo "$PAUSE_IMAGE" >"$IMAGES/pause.ref"
  echo "$pause_key" >"$NODE/.stamp-pause"
  say "pause: $(sizes "$BIN/pause" "$PAUSE_TAR")image $PAUSE_IMAGE"
fi

# --- 5. CoreDNS image ------------------------------------------------------------------------------
# FROM scratch like pause: only the static coredns binary, non-root (65532, the upstream image's
# user). The Corefile comes from a ConfigMap; binding :53 as non-root needs the pod sysctl
# net.ipv4.ip_unprivileged_port_start=0 (stack/node_addons.py's Deployment sets it).
COREDNS_IMAGE="cryptopipe-coredns:${COREDNS_VERSION#v}"
COREDNS_TAR="$IMAGES/coredns-${COREDNS_VERSION#v}.tar"
dns_image_key="coredns-image $COREDNS_IMAGE $(sha256sum "$BIN/coredns" | cut -c1-16)"
if stamp_ok "$NODE/.stamp-coredns-image" "$dns_image_key" && [ -f "$COREDNS_TAR" ]; then
  say "coredns image: up to date ($COREDNS_IMAGE)"
else
  rm -f "$NODE/.stamp-coredns-image"
  out="$NODE/out-coredns-image"; rm -rf "$out"; mkdir -p "$out"
  cp "$BIN/coredns" "$out/coredns"
  run "$DNS_LOG" scratch_image "$out/image.tar" "$out/coredns" "$COREDNS_IMAGE" 65532:65532
  mv -f "$out/image.tar" "$COREDNS_TAR" && rm -rf "$out"
  echo "$COREDNS_IMAGE" >"$IMAGES/coredns.ref"
  echo "$dns_image_key" >"$NODE/.stamp-coredns-image"
  say "coredns image: $(sizes "$COREDNS_TAR")image $COREDNS_IMAGE"
fi

say "done: $BIN, $IMAGES"
