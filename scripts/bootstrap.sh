#!/usr/bin/env bash
# Installs what the tests and the local stack need, into the cache ($CRYPTOPIPE_CACHE, outside the
# repo) and into .venv:
#   1. java >= 17 and mvn, Prometheus + promtool (Debian's prometheus package): apt-get when missing
#   2. .venv with `pip install -e ".[test,lint,bench]"` (pyspark builds from its sdist once; the pip
#      cache in $CRYPTOPIPE_CACHE/pip keeps the built wheel)
#   3. the Kafka broker's runtime classpath        -> $KAFKA_LIBS  (scripts/maven/kafka-broker.pom.xml)
#   4. Spark's Kafka and s3a connector jars        -> $SPARK_JARS  (scripts/maven/spark-connectors.pom.xml)
#   5. the versitygw S3 server, built by go install  -> $VERSITYGW_BIN
#   6. the Kubernetes control plane for the operator's tests (scripts/build-control-plane.sh:
#      etcd, kube-apiserver, kube-controller-manager from the Go module proxy; kubectl and helm)
#   7. a real node for `cryptopipe dev cluster up --node` and the `node` tests (scripts/build-node.sh)
# Steps 2-5 write a stamp holding a hash of their inputs once they succeed, and are skipped
# while it matches: editing a pom, a version or pyproject.toml's [project] re-runs just that step,
# and an interrupted step (no stamp) starts over. Outputs are built next to their final place and
# moved in, so a half-done folder never looks complete.
set -euo pipefail
# --data-plane-only: skip step 6 (the Kubernetes control plane only the operator's tests use)
DATA_PLANE_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --data-plane-only) DATA_PLANE_ONLY=1 ;;
    *) printf 'bootstrap: unknown option %s (known: --data-plane-only)\n' "$arg" >&2; exit 2 ;;
  esac
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"
CACHE="$CRYPTOPIPE_CACHE"
LOGS="$CACHE/logs"
VERSITYGW_VERSION=v1.8.0
VERSITYGW_MIN_GO=1.24
mkdir -p "$CACHE" "$LOGS"

SCRIPT_NAME=bootstrap
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

# One bootstrap at a time per cache: two parallel runs would both copy 600 MB of jars.
exec 9>"$CACHE/.bootstrap.lock"
flock -w 1800 9 || die "another bootstrap holds $CACHE/.bootstrap.lock"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
  command -v apt-get >/dev/null || die "$* missing and no apt-get to install it; install it by hand"
  say "apt-get install $*"
  $SUDO apt-get update -qq >"$LOGS/apt.log" 2>&1 || true
  run "$LOGS/apt.log" $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# --- 1. toolchain ----------------------------------------------------------------------------
java_ok() {
  local major
  major="$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)"
  [ -n "$major" ] && [ "$major" -ge 17 ]
}
if ! command -v java >/dev/null || ! java_ok; then
  apt_install openjdk-17-jre-headless
  unset JAVA_HOME; . "$REPO/scripts/env.sh"
fi
java_ok || die "java >= 17 needed (Spark 4 and Kafka 4), found: $(java -version 2>&1 | head -n1)"
command -v python3 >/dev/null || apt_install python3 python3-venv
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "python3 >= 3.11 needed, found $(python3 -V)"
need_mvn() { command -v mvn >/dev/null || apt_install maven; }
# Prometheus scrapes the local stack and evaluates the chart's alert rules (tests, `cryptopipe up`);
# promtool checks metrics and rules. Debian's package has both (bookworm: 2.42). Its postinst may be
# refused to start a system service (policy-rc.d): harmless, we start our own on a free port.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  apt_install prometheus
fi
command -v promtool >/dev/null || die "promtool missing after installing Debian's prometheus package"

# --- 2. Python venv ----------------------------------------------------------------------------
VENV="$REPO/.venv"
# Keyed by what pip reads ([build-system] and [project]), not by e.g. pytest's settings.
pyproject_key="$(python3 -c 'import hashlib, json, sys, tomllib
d = tomllib.load(open(sys.argv[1], "rb"))
inputs = json.dumps([d.get("build-system"), d.get("project")], sort_keys=True)
print(hashlib.sha256(inputs.encode()).hexdigest()[:16])' "$REPO/pyproject.toml")"
venv_key="$pyproject_key-$(python3 -V | tr -d ' ')-$REPO"
if stamp_ok "$VENV/.cryptopipe-stamp" "$venv_key" && "$VENV/bin/python" -c '' 2>/dev/null; then
  say "venv: up to date"
else
  say "venv: pip install -e .[test,lint,bench] (first run builds pyspark from its sdist: ~2 min)"
  rm -f "$VENV/.cryptopipe-stamp"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" 2>"$LOGS/venv.log" \
    || { apt_install python3-venv; python3 -m venv "$VENV"; }
  run "$LOGS/pip.log" env PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$VENV/bin/pip" install -e "$REPO[test,lint,bench]"
  echo "$venv_key" >"$VENV/.cryptopipe-stamp"
fi

# --- 3 + 4. Maven classpaths -------------------------------------------------------------------
# maven_copy NAME POM DEST: the POM's runtime dependencies, as plain jars, in DEST.
maven_copy() {
  local name="$1" pom="$2" dest="$3" key
  key="$(fingerprint "$pom")"
  if stamp_ok "$dest/.stamp" "$key"; then say "$name: up to date ($(ls "$dest"/*.jar | wc -l) jars)"; return; fi
  need_mvn
  say "$name: mvn copy-dependencies -> $dest"
  rm -rf "$dest.tmp"
  run "$LOGS/mvn-$name.log" mvn -B -q -Dmaven.repo.local="$CACHE/m2" -f "$pom" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dest.tmp"
  echo "$key" >"$dest.tmp/.stamp"
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  say "$name: $(ls "$dest"/*.jar | wc -l) jars"
}
maven_copy kafka "$REPO/scripts/maven/kafka-broker.pom.xml" "$KAFKA_LIBS"
maven_copy spark "$REPO/scripts/maven/spark-connectors.pom.xml" "$SPARK_JARS"

# --- 5. versitygw -------------------------------------------------------------------------------
# The local stand-in for MinIO: Versity's S3 gateway over a POSIX folder (Apache-2.0), built from the
# Go module proxy. Chosen over s3s-fs 0.14, which answers Hadoop s3a's probes of "folders" with 500
# and broke Spark's checkpoints; versitygw passed the same s3a checkpoint runs unpatched.
VGW_ROOT="$(dirname "$(dirname "$VERSITYGW_BIN")")"
vgw_key="versitygw $VERSITYGW_VERSION"
if stamp_ok "$VGW_ROOT/.stamp" "$vgw_key" && [ -x "$VERSITYGW_BIN" ]; then
  say "versitygw: up to date"
else
  command -v go >/dev/null || die "versitygw is built with Go >= $VERSITYGW_MIN_GO, and there is no go on PATH." \
    "Install Go (the golang-go package is too old on Debian 12) and re-run."
  go_v="$(go env GOVERSION | sed 's/^go//')"
  version_ge "$go_v" "$VERSITYGW_MIN_GO" || die "versitygw $VERSITYGW_VERSION needs Go >= $VERSITYGW_MIN_GO, found $go_v"
  say "versitygw: build $VERSITYGW_VERSION (~1.5 min on 2 cores, log $LOGS/versitygw.log)"
  rm -f "$VGW_ROOT/.stamp" && mkdir -p "$VGW_ROOT/bin" "$CACHE/go/mod" "$CACHE/go/build"
  run "$LOGS/versitygw.log" env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOBIN="$VGW_ROOT/bin" \
    go install -trimpath -ldflags "-s -w" "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  "$VERSITYGW_BIN" --version >/dev/null 2>&1 || die "go install finished but $VERSITYGW_BIN does not run"
  echo "$vgw_key" >"$VGW_ROOT/.stamp"
fi

# --- 6. Kubernetes control plane ----------------------------------------------------------------
# ~8.5 min cold on 2 cores, nothing when cached; it keeps its own stamps and lock.
if [ "$DATA_PLANE_ONLY" = 1 ]; then
  say "control plane: skipped (--data-plane-only)"
else
  "$REPO/scripts/build-control-plane.sh"
fi

# --- 7. a real node ------------------------------------------------------------------------------
# kubelet, kube-proxy, kube-scheduler, CoreDNS, the pause image and the Debian packages a node needs
# (scripts/build-node.sh; ~4 min after the control plane's build, nothing when cached). The `node`
# tests run a real node on this machine and need root, as CI has.
if [ "$DATA_PLANE_ONLY" = 1 ]; then
  say "node: skipped (--data-plane-only)"
else
  "$REPO/scripts/build-node.sh"
fi

say "done: . scripts/env.sh && .venv/bin/pytest"
