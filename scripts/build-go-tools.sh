#!/usr/bin/env bash
# Builds dev tools from the Go module proxy into $CRYPTOPIPE_CACHE/go-tools/NAME (outside the repo):
#
#   scripts/build-go-tools.sh [TOOL...]      build (all when none named); idempotent
#   scripts/build-go-tools.sh --path TOOL    print where TOOL's binary is (built or not)
#   scripts/build-go-tools.sh --list         TOOL VERSION, one a line
#   scripts/build-go-tools.sh --release TOOL the version the tool itself reports (prometheus: 3.16.0)
#
# Tools:
#   skaffold             v2.16.1  github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold
#   prometheus-operator  v0.85.0  github.com/prometheus-operator/prometheus-operator: the operator
#                                 (bin/operator), its config reloader (bin/prometheus-config-reloader,
#                                 the sidecar of every Prometheus pod it makes) and its CRDs, copied
#                                 from the module's example/prometheus-operator-crd (crds/*.yaml)
#   prometheus           v0.316.0 github.com/prometheus/prometheus/cmd/prometheus (Prometheus 3.16.0; go
#                                 install: no replace lines), without the web UI's built assets (the
#                                 API, scraping and rules need none). Debian's build cannot serve the
#                                 cluster: it has no Kubernetes service discovery (docs/cluster.md)
#   kind                 v0.33.0  sigs.k8s.io/kind (go install: no replace lines). The CLI only: its
#                                 node image needs a registry (docs/cluster.md, "kind")
#
# Why a throwaway module: `go install MOD@VERSION` refuses a module whose go.mod has replace lines
# (both have them), so a module of our own requires the tool and copies what it needs of its go.mod:
# skaffold's replace lines pin dependencies (they must be honoured, or the build breaks);
# prometheus-operator's replace lines point at its own submodules by local path, which the proxy
# serves as modules of their own, so there the submodules are required at the same version instead.
# Each tool is built in a scratch folder and moved in, with a stamp of its inputs: a half-done build
# never looks done. `nice -n 19`; the Go caches are the project's ($CRYPTOPIPE_CACHE/go).
# Measured (2 shared cores): docs/cluster.md ("skaffold" and "Prometheus in the cluster").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"
CACHE="$CRYPTOPIPE_CACHE"
TOOLS="$CACHE/go-tools"
LOGS="$CACHE/logs"
SCRIPT_NAME=go-tools
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

SKAFFOLD_VERSION=v2.16.1
KIND_VERSION=v0.33.0
PROMETHEUS_MODULE_VERSION=v0.316.0   # the module's v0.3MM.P is Prometheus 3.MM.P
PROMETHEUS_OPERATOR_VERSION=v0.85.0
GO_MIN=1.24
ALL="skaffold prometheus-operator kind prometheus"

version_of() {
  case "$1" in
    skaffold) echo "$SKAFFOLD_VERSION" ;;
    prometheus-operator) echo "$PROMETHEUS_OPERATOR_VERSION" ;;
    kind) echo "$KIND_VERSION" ;;
    prometheus) echo "$PROMETHEUS_MODULE_VERSION" ;;
    *) die "unknown tool '$1' (tools: $ALL)" ;;
  esac
}
path_of() {
  case "$1" in
    skaffold) echo "$TOOLS/skaffold/bin/skaffold" ;;
    prometheus-operator) echo "$TOOLS/prometheus-operator/bin/operator" ;;
    kind) echo "$TOOLS/kind/bin/kind" ;;
    prometheus) echo "$TOOLS/prometheus/bin/prometheus" ;;
    *) die "unknown tool '$1' (tools: $ALL)" ;;
  esac
}

# prometheus' Go module versions v0.3MM.P are its releases 3.MM.P
release_of() {
  case "$1" in
    prometheus) local v="${PROMETHEUS_MODULE_VERSION#v0.3}"; echo "3.$((10#${v%%.*})).${v#*.}" ;;
    *) version_of "$1" | sed 's/^v//' ;;
  esac
}

case "${1:-}" in
  --release) release_of "${2:?--release needs a tool}"; exit 0 ;;
  --path) path_of "${2:?--path needs a tool}"; exit 0 ;;
  --list) for t in $ALL; do echo "$t $(version_of "$t")"; done; exit 0 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
  -*) die "unknown option $1 (--help lists them)" ;;
esac
WANT="${*:-$ALL}"
for t in $WANT; do version_of "$t" >/dev/null; done

command -v go >/dev/null || die "no go on PATH: the tools are built with Go >= $GO_MIN"
GO_VERSION="$(go env GOVERSION)"
version_ge "${GO_VERSION#go}" "$GO_MIN" || die "Go >= $GO_MIN needed, found $GO_VERSION"
mkdir -p "$TOOLS" "$LOGS" "$CACHE/go/mod" "$CACHE/go/build"
# one build of a tool at a time (a lock per tool: building skaffold does not hold up prometheus-operator)
lock() {
  exec 7>"$TOOLS/.$1.lock"
  flock -w 3600 7 || die "another build holds $TOOLS/.$1.lock"
}

gobuild() {
  local dir="$1" logf="$2"; shift 2
  (cd "$dir" && run "$logf" env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" nice -n 19 "$@")
}
# module_file DIR LOG MOD@VERSION FIELD: a field (GoMod, Dir) of `go mod download -json`
module_file() {
  local out; out="$(cd "$1" && GOTOOLCHAIN=local GOMODCACHE="$CACHE/go/mod" GOFLAGS=-mod=mod go mod download -json "$3" 2>>"$2")" \
    || die "go mod download $3 failed (log $2)"
  printf '%s\n' "$out" | sed -n "s/^[[:space:]]*\"$4\": \"\(.*\)\",\{0,1\}\$/\1/p" | head -n1
}

# --- skaffold --------------------------------------------------------------------------------------
build_skaffold() {
  local mod=github.com/GoogleContainerTools/skaffold/v2 v="$SKAFFOLD_VERSION" dir="$TOOLS/skaffold"
  local logf="$LOGS/go-tools-skaffold.log" key="skaffold $v $GO_VERSION"
  if stamp_ok "$dir/.stamp" "$key" && [ -x "$dir/bin/skaffold" ]; then say "skaffold: up to date ($v)"; return; fi
  say "skaffold: go build $mod@$v (~5 min on 2 cores, log $logf)"
  local began=$SECONDS src="$dir/src" out="$dir/out"
  rm -rf "$src" "$out" "$dir/.stamp" "$logf"; mkdir -p "$src" "$out" "$dir/bin"
  printf 'module local/skaffoldbin\n' >"$src/go.mod"
  local upstream; upstream="$(module_file "$src" "$logf" "$mod@$v" GoMod)"
  [ -f "$upstream" ] || die "no go.mod of $mod@$v in the module cache (log $logf)"
  {
    printf 'module local/skaffoldbin\n\n'
    grep -m1 '^go ' "$upstream"
    printf '\nrequire %s %s\n\n' "$mod" "$v"
    awk '/^replace \(/,/^\)/' "$upstream"
    grep '^replace [^(]' "$upstream" || true
  } >"$src/go.mod"
  gobuild "$src" "$logf" go get -tool "$mod/cmd/skaffold@$v"
  gobuild "$src" "$logf" go mod download
  echo "modules resolved after $((SECONDS - began))s" >>"$logf"
  gobuild "$src" "$logf" go build -trimpath \
    -ldflags "-s -w -X $mod/pkg/skaffold/version.version=$v -X $mod/pkg/skaffold/version.buildDate=1970-01-01T00:00:00Z" \
    -o "$out/skaffold" "$mod/cmd/skaffold"
  "$out/skaffold" version >>"$logf" 2>&1 || die "the built skaffold does not run (log $logf)"
  [ "$("$out/skaffold" version)" = "$v" ] || die "the built skaffold says $("$out/skaffold" version), not $v"
  mv -f "$out/skaffold" "$dir/bin/skaffold" && rm -rf "$out"
  echo "took $((SECONDS - began))s" >>"$logf"
  echo "$key" >"$dir/.stamp"
  say "skaffold: built in $((SECONDS - began))s ($(du -h "$dir/bin/skaffold" | cut -f1))"
}

# --- prometheus-operator ---------------------------------------------------------------------------
build_prometheus_operator() {
  local mod=github.com/prometheus-operator/prometheus-operator v="$PROMETHEUS_OPERATOR_VERSION"
  local dir="$TOOLS/prometheus-operator" logf="$LOGS/go-tools-prometheus-operator.log"
  local key="prometheus-operator $v $GO_VERSION"
  if stamp_ok "$dir/.stamp" "$key" && [ -x "$dir/bin/operator" ] && [ -x "$dir/bin/prometheus-config-reloader" ]; then
    say "prometheus-operator: up to date ($v)"; return
  fi
  say "prometheus-operator: go build $mod@$v (~2-4 min on 2 cores, log $logf)"
  local began=$SECONDS src="$dir/src" out="$dir/out"
  rm -rf "$src" "$out" "$dir/.stamp" "$logf"; mkdir -p "$src" "$out" "$dir/bin"
  printf 'module local/promoperatorbin\n' >"$src/go.mod"
  local upstream moddir; upstream="$(module_file "$src" "$logf" "$mod@$v" GoMod)"
  moddir="$(module_file "$src" "$logf" "$mod@$v" Dir)"
  [ -f "$upstream" ] && [ -d "$moddir" ] || die "no $mod@$v in the module cache (log $logf)"
  # its replace lines are `=> ./pkg/...` (its own submodules): require those at the same version
  grep -q '=> \./pkg/apis/monitoring' "$upstream" || die "$mod@$v's go.mod no longer replaces pkg/apis/monitoring locally: check this recipe"
  {
    printf 'module local/promoperatorbin\n\n'
    grep -m1 '^go ' "$upstream"
    printf '\nrequire (\n\t%s %s\n\t%s/pkg/apis/monitoring %s\n\t%s/pkg/client %s\n)\n' "$mod" "$v" "$mod" "$v" "$mod" "$v"
  } >"$src/go.mod"
  gobuild "$src" "$logf" go get -tool "$mod/cmd/operator@$v" "$mod/cmd/prometheus-config-reloader@$v"
  gobuild "$src" "$logf" go mod download
  echo "modules resolved after $((SECONDS - began))s" >>"$logf"
  local pv=github.com/prometheus/common/version
  gobuild "$src" "$logf" go build -trimpath \
    -ldflags "-s -w -X $pv.Version=${v#v} -X $pv.Revision=$v -X $pv.Branch=release -X $pv.BuildUser=cryptopipe" \
    -o "$out/" "$mod/cmd/operator" "$mod/cmd/prometheus-config-reloader"
  "$out/operator" --version >>"$logf" 2>&1 || die "the built operator does not run (log $logf)"
  "$out/prometheus-config-reloader" --version >>"$logf" 2>&1 || die "the built config reloader does not run (log $logf)"
  # the CRDs as the module ships them (generated upstream by controller-gen), never written by hand
  local crds="$moddir/example/prometheus-operator-crd"
  ls "$crds"/monitoring.coreos.com_*.yaml >/dev/null 2>&1 || die "no CRDs in $crds"
  rm -rf "$dir/crds"; mkdir -p "$out/crds"
  cp "$crds"/monitoring.coreos.com_*.yaml "$out/crds/"
  chmod u+w "$out/crds"/*.yaml
  mv -f "$out/operator" "$out/prometheus-config-reloader" "$dir/bin/" && mv "$out/crds" "$dir/crds" && rm -rf "$out"
  echo "took $((SECONDS - began))s" >>"$logf"
  echo "$key" >"$dir/.stamp"
  say "prometheus-operator: built in $((SECONDS - began))s (operator $(du -h "$dir/bin/operator" | cut -f1)," \
    "config reloader $(du -h "$dir/bin/prometheus-config-reloader" | cut -f1), $(ls "$dir/crds" | wc -l) CRDs)"
}

# --- kind ------------------------------------------------------------------------------------------
build_kind() {
  local mod=sigs.k8s.io/kind v="$KIND_VERSION" dir="$TOOLS/kind" logf="$LOGS/go-tools-kind.log"
  local key="kind $v $GO_VERSION"
  if stamp_ok "$dir/.stamp" "$key" && [ -x "$dir/bin/kind" ]; then say "kind: up to date ($v)"; return; fi
  say "kind: go install $mod@$v (log $logf)"
  local began=$SECONDS out="$dir/out"
  rm -rf "$out" "$dir/.stamp" "$logf"; mkdir -p "$out" "$dir/bin"
  gobuild "$dir" "$logf" env GOBIN="$out" go install -trimpath -ldflags "-s -w" "$mod@$v"
  "$out/kind" version >>"$logf" 2>&1 || die "the built kind does not run (log $logf)"
  mv -f "$out/kind" "$dir/bin/kind" && rm -rf "$out"
  echo "$key" >"$dir/.stamp"
  say "kind: built in $((SECONDS - began))s ($(du -h "$dir/bin/kind" | cut -f1))"
}

# --- prometheus ------------------------------------------------------------------------------------
build_prometheus() {
  local mod=github.com/prometheus/prometheus v="$PROMETHEUS_MODULE_VERSION" dir="$TOOLS/prometheus"
  local logf="$LOGS/go-tools-prometheus.log" key="prometheus $PROMETHEUS_MODULE_VERSION $GO_VERSION"
  local release; release="$(release_of prometheus)"
  if stamp_ok "$dir/.stamp" "$key" && [ -x "$dir/bin/prometheus" ]; then say "prometheus: up to date ($release)"; return; fi
  say "prometheus: go install $mod/cmd/prometheus@$v (Prometheus $release; log $logf)"
  local began=$SECONDS out="$dir/out" pv=github.com/prometheus/common/version
  rm -rf "$out" "$dir/.stamp" "$logf"; mkdir -p "$out" "$dir/bin"
  gobuild "$dir" "$logf" env GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X $pv.Version=$release -X $pv.Revision=$v -X $pv.Branch=release -X $pv.BuildUser=cryptopipe" \
    "$mod/cmd/prometheus@$v" "$mod/cmd/promtool@$v"
  "$out/prometheus" --version >>"$logf" 2>&1 || die "the built prometheus does not run (log $logf)"
  mv -f "$out/prometheus" "$out/promtool" "$dir/bin/" && rm -rf "$out"
  echo "$key" >"$dir/.stamp"
  say "prometheus: built in $((SECONDS - began))s ($(du -h "$dir/bin/prometheus" | cut -f1))"
}

for t in $WANT; do
  lock "$t"
  case "$t" in
    skaffold) build_skaffold ;;
    prometheus-operator) build_prometheus_operator ;;
    kind) build_kind ;;
    prometheus) build_prometheus ;;
  esac
done
