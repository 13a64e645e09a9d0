#!/usr/bin/env bash
# Builds the project's container images on this machine, offline, with a local Docker daemon
# (`make images`). See ../shared/docs/infra-recipes.md section 10 for why it is done this way:
# no registry, and HTTPS from inside a container fails, so everything a build needs is fetched on
# the host and COPYed in.
#
#   scripts/build-images.sh [IMAGE...]             build (all when none named); idempotent
#   scripts/build-images.sh --load-into SOCKET     ... then `docker save | ctr -a SOCKET -n k8s.io
#                                                  images import -` of the images named (all when
#                                                  none) into a node's containerd
#   scripts/build-images.sh --keep-daemon          leave a dockerd this script started running
#   scripts/build-images.sh --start-daemon         only find or start the daemon; prints DOCKER_HOST=...
#   scripts/build-images.sh --stop-daemon          stop the private dockerd (if this script started one)
#   scripts/build-images.sh --list                 the images and their tags, one `NAME IMAGE:TAG` a line
#   scripts/build-images.sh --public-base          the Dockerfiles' public defaults (python:3.12-slim-bookworm,
#                                                  PyPI, eclipse-temurin...): for a machine with a registry
#
# Steps, each skipped while its stamp (a hash of its inputs) matches:
#   1. a Docker daemon: $DOCKER_HOST or /var/run/docker.sock if one answers, else a private dockerd
#      (data root, exec root, pidfile and socket under $CRYPTOPIPE_CACHE/images/docker; no bridge,
#      no iptables rules: builds and test runs use --network none), stopped at the end unless
#      --keep-daemon
#   2. Debian bookworm bases from `debootstrap --variant=minbase`, `docker import`ed:
#        cryptopipe-debian:bookworm-minbase   (+ passwd)                       versitygw
#        cryptopipe-debian:bookworm-python3   (+ python3, python3-venv)        operator, ingestion, replay
#        cryptopipe-debian:bookworm-java17    (+ python3, openjdk-17-jre-headless) Spark, spark-operator, Kafka
#   3. per image a wheelhouse (`pip wheel` on the host of exactly that image's extra; pyspark from the
#      pip cache, built once from its sdist), installed in the image with `pip install --no-index`
#   4. spark-operator from the Go module proxy (a throwaway module with its replace block);
#      prometheus-operator, its config reloader and Prometheus by scripts/build-go-tools.sh (dev tooling)
#   5. `docker build` of each docker/*.Dockerfile from a staged context (the repo's files plus the
#      image's wheelhouse, jars or binary), with the local base and wheelhouse as build arguments
#
# Tags are versions, never `latest`: the project's images carry the project version (override with
# CRYPTOPIPE_IMAGE_TAG), the others the version of what they hold.
# Measured on 2 busy cores: docs/cluster.md ("Images").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/env.sh
. "$REPO/scripts/env.sh"
CACHE="$CRYPTOPIPE_CACHE"
IMG="$CACHE/images"
LOGS="$CACHE/logs"
SCRIPT_NAME=images
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"

# --- versions --------------------------------------------------------------------------------------
VERSION="$(sed -n 's/^version = "\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)"
TAG="${CRYPTOPIPE_IMAGE_TAG:-$VERSION}"
SPARK_VERSION="$(grep -o '"pyspark==[0-9.]*"' "$REPO/pyproject.toml" | head -n1 | tr -d '"' | cut -d= -f3)"
SPARK_OPERATOR_VERSION=v2.5.2
VERSITYGW_VERSION="$(sed -n 's/^VERSITYGW_VERSION=//p' "$REPO/scripts/bootstrap.sh")"
kafka_version() { local j; j="$(ls "$KAFKA_LIBS"/kafka-clients-*.jar 2>/dev/null | head -n1)"; j="${j##*/kafka-clients-}"; echo "${j%.jar}"; }
PY="${CRYPTOPIPE_HOST_PYTHON:-$REPO/.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
GO_TOOLS="$REPO/scripts/build-go-tools.sh"
PROMETHEUS_OPERATOR_VERSION="$("$GO_TOOLS" --list | sed -n 's/^prometheus-operator //p')"
# Prometheus from the Go proxy (Debian's has no Kubernetes service discovery): its release version
PROMETHEUS_VERSION="$("$GO_TOOLS" --release prometheus)"

# name -> image:tag (the order is the build order: spark before spark-job and spark-operator)
ALL="operator ingestion spark spark-job spark-operator kafka s3 dev-replay dev-prometheus dev-prometheus-operator dev-prometheus-config-reloader"
image_of() {
  case "$1" in
    operator) echo "cryptopipe-operator:$TAG" ;;
    ingestion) echo "cryptopipe-ingestion:$TAG" ;;
    spark) echo "cryptopipe-spark:$SPARK_VERSION" ;;
    spark-job) echo "cryptopipe-spark-job:$TAG" ;;
    spark-operator) echo "cryptopipe-spark-operator:${SPARK_OPERATOR_VERSION#v}" ;;
    kafka) echo "cryptopipe-kafka:$(kafka_version)" ;;
    s3) echo "cryptopipe-s3-versitygw:${VERSITYGW_VERSION#v}" ;;
    dev-replay) echo "cryptopipe-dev-replay:$TAG" ;;
    dev-prometheus) echo "cryptopipe-dev-prometheus:$PROMETHEUS_VERSION" ;;
    dev-prometheus-operator) echo "cryptopipe-dev-prometheus-operator:${PROMETHEUS_OPERATOR_VERSION#v}" ;;
    dev-prometheus-config-reloader) echo "cryptopipe-dev-prometheus-config-reloader:${PROMETHEUS_OPERATOR_VERSION#v}" ;;
    *) die "unknown image '$1' (images: $ALL)" ;;
  esac
}

# --- options ---------------------------------------------------------------------------------------
KEEP=0 LOAD_SOCK="" PUBLIC=0 ACTION=build WANT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --keep-daemon) KEEP=1 ;;
    --load-into) LOAD_SOCK="${2:?--load-into needs a containerd socket}"; shift ;;
    --load-into=*) LOAD_SOCK="${1#*=}" ;;
    --public-base) PUBLIC=1 ;;
    --start-daemon) ACTION=start ;;
    --stop-daemon) ACTION=stop ;;
    --list) ACTION=list ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (--help lists them)" ;;
    *) image_of "$1" >/dev/null; WANT="$WANT $1" ;;
  esac
  shift
done
WANT="${WANT:-$ALL}"
# what --load-into loads: the images asked for, not the spark base the two below add (no pod runs
# it, and importing its 1.55 GB took ~45 s of `up --node --platform`)
ASKED="$WANT"
# spark-job and spark-operator are built on the spark image
case " $WANT " in *" spark-job "* | *" spark-operator "*) case " $WANT " in *" spark "*) ;; *) WANT="spark $WANT" ;; esac ;; esac

if [ "$ACTION" = list ]; then
  for n in $ALL; do echo "$n $(image_of "$n")"; done
  exit 0
fi

mkdir -p "$IMG" "$LOGS"

# --- 1. the Docker daemon --------------------------------------------------------------------------
DOCKER_DIR="$IMG/docker"
PRIVATE_HOST="unix://$DOCKER_DIR/docker.sock"
PIDFILE="$DOCKER_DIR/dockerd.pid"
DOCKERD_LOG="$LOGS/dockerd.log"
STARTED=0
export DOCKER_BUILDKIT=0   # the legacy builder: Debian's docker.io 20.10 has no buildx
answers() { DOCKER_HOST="$1" docker info >/dev/null 2>&1; }
private_pid() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"; }

daemon_up() {
  command -v docker >/dev/null || die "no docker client: apt-get install docker.io"
  if [ -n "${DOCKER_HOST:-}" ] && answers "$DOCKER_HOST"; then return; fi
  if answers unix:///var/run/docker.sock; then export DOCKER_HOST=unix:///var/run/docker.sock; return; fi
  export DOCKER_HOST="$PRIVATE_HOST"
  answers "$DOCKER_HOST" && return
  [ "$(id -u)" = 0 ] || die "no Docker daemon answers, and starting one needs root"
  command -v dockerd >/dev/null || die "no dockerd: apt-get install docker.io"
  mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/exec"
  say "starting a private dockerd ($DOCKER_HOST, log $DOCKERD_LOG)"
  # no bridge and no iptables rules: this daemon leaves the host's network as it found it; it must
  # not inherit the lock (fd 7), or it would hold it as long as it runs
  setsid nohup dockerd --host "$DOCKER_HOST" --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec" \
    --pidfile "$PIDFILE" --bridge none --iptables=false --ip-masq=false --ip-forward=false \
    --storage-driver overlay2 >>"$DOCKERD_LOG" 2>&1 </dev/null 7>&- &
  local i
  for i in $(seq 1 60); do
    answers "$DOCKER_HOST" && { STARTED=1; return; }
    sleep 1
  done
  tail -n 20 "$DOCKERD_LOG" >&2
  die "dockerd did not answer within 60 s (log $DOCKERD_LOG)"
}

daemon_stop() {
  local pid i
  pid="$(private_pid)" || { say "no private dockerd running"; return 0; }
  say "stopping the private dockerd (pid $pid)"
  kill "$pid"
  for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  die "dockerd $pid did not stop within 30 s"
}

case "$ACTION" in
  start) daemon_up; echo "DOCKER_HOST=$DOCKER_HOST"; exit 0 ;;
  stop) daemon_stop; exit 0 ;;
esac

# one build at a time (the daemon-only actions above need no lock)
exec 7>"$IMG/.lock"
flock -w 3600 7 || die "another build holds $IMG/.lock"
daemon_up
finish() { if [ "$STARTED" = 1 ] && [ "$KEEP" = 0 ]; then daemon_stop; fi; }
trap finish EXIT
say "docker daemon: $DOCKER_HOST"
# builds never need the network: everything is in the staged context (--public-base pulls and uses PyPI)
if [ "$PUBLIC" = 1 ]; then NET=host; else NET=none; fi

# --- 2. Debian bases -------------------------------------------------------------------------------
# base NAME PACKAGES: debootstrap once into a tarball (cached), `docker import` it when the daemon lacks it
base() {
  local name="$1" include="$2" tag="cryptopipe-debian:bookworm-$1"
  local tarball="$IMG/base-$name.tar" key="bookworm minbase $MIRROR $include" logf="$LOGS/images-base-$name.log"
  if ! stamp_ok "$tarball.stamp" "$key" || [ ! -f "$tarball" ]; then
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    command -v debootstrap >/dev/null || die "no debootstrap: apt-get install debootstrap"
    say "base $name: debootstrap --variant=minbase bookworm + $include (~1-3 min, log $logf)"
    local began=$SECONDS root="$IMG/rootfs-$name"
    rm -rf "$root" "$tarball" "$tarball.stamp" "$logf"; mkdir -p "$IMG/debs"
    run "$logf" debootstrap --variant=minbase --cache-dir="$IMG/debs" --include="$include" bookworm "$root" "$MIRROR"
    # what an image does not need: package lists, downloaded .debs, docs and man pages
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
    run "$logf" tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball" && rm -rf "$root"
    echo "$key" >"$tarball.stamp"
    say "base $name: debootstrap took $((SECONDS - began))s"
  fi
  local want; want="$(sha256sum <"$tarball" | cut -c1-16)"
  if [ "$(docker image inspect -f '{{index .Config.Labels "cryptopipe.rootfs"}}' "$tag" 2>/dev/null)" != "$want" ]; then
    say "base $name: docker import -> $tag"
    run "$logf" docker import --change "LABEL cryptopipe.rootfs=$want" \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
      --change 'CMD ["/bin/bash"]' "$tarball" "$tag"
  fi
}

# --- 3. wheelhouses --------------------------------------------------------------------------------
# wheelhouse NAME REQUIREMENT...: the wheels for `pip install REQUIREMENT...` (and setuptools/wheel,
# which pip's isolated build of the project needs), built on the host with its Python (the local
# base's Python is Debian's 3.11: the host's must be 3.11 too)
wheelhouse() {
  local name="$1"; shift
  local dir="$IMG/wheelhouse/$name" logf="$LOGS/images-wheelhouse-$name.log"
  local pyv; pyv="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [ "$pyv" = 3.11 ] || die "the wheelhouse is for Debian bookworm's Python 3.11, and $PY is $pyv (set CRYPTOPIPE_HOST_PYTHON)"
  local key; key="$* py$pyv $(fingerprint "$REPO/pyproject.toml")"
  if stamp_ok "$dir/.stamp" "$key"; then return; fi
  say "wheelhouse $name: pip wheel $* (log $logf)"
  rm -rf "$dir" "$dir.tmp" "$logf"; mkdir -p "$dir.tmp"
  (cd "$REPO" && PIP_CACHE_DIR="$CACHE/pip" run "$logf" "$PY" -m pip wheel --disable-pip-version-check \
    -w "$dir.tmp" "setuptools>=69" wheel "$@")
  rm -f "$dir.tmp"/cryptopipe-*.whl   # the project itself is built in the image from its copied source
  mv "$dir.tmp" "$dir"
  echo "$key" >"$dir/.stamp"
}

# --- 4. spark-operator from the Go proxy -----------------------------------------------------------
SO_DIR="$IMG/spark-operator"
SO_BIN="$SO_DIR/bin/spark-operator"
gobuild() {
  local dir="$1" logf="$2"; shift 2
  (cd "$dir" && run "$logf" env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false \
    GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" nice -n 19 "$@")
}
spark_operator_bin() {
  local mod=github.com/kubeflow/spark-operator/v2 logf="$LOGS/images-spark-operator.log"
  local key; key="spark-operator $SPARK_OPERATOR_VERSION $(command -v go >/dev/null && go env GOVERSION)"
  if stamp_ok "$SO_DIR/.stamp" "$key" && [ -x "$SO_BIN" ]; then return; fi
  command -v go >/dev/null || die "spark-operator is built with Go, and there is no go on PATH"
  say "spark-operator: go build $mod@$SPARK_OPERATOR_VERSION (~2-4 min on 2 cores, log $logf)"
  local began=$SECONDS src="$SO_DIR/src"
  rm -rf "$src" "$SO_DIR/.stamp" "$logf"; mkdir -p "$src" "$SO_DIR/bin" "$CACHE/go/mod" "$CACHE/go/build"
  # its go.mod has replace lines, so `go install mod@version` refuses it: a throwaway module that
  # requires it and copies its go directive and replace block
  printf 'module local/sparkoperatorbin\n' >"$src/go.mod"
  gobuild "$src" "$logf" go mod download -json "$mod@$SPARK_OPERATOR_VERSION"
  local upstream; upstream="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' "$logf" | tail -n1)"
  [ -f "$upstream" ] || die "no go.mod of $mod@$SPARK_OPERATOR_VERSION in the module cache (log $logf)"
  {
    printf 'module local/sparkoperatorbin\n\n'
    grep -m1 '^go ' "$upstream"
    printf '\nrequire %s %s\n\n' "$mod" "$SPARK_OPERATOR_VERSION"
    awk '/^replace \(/,/^\)/' "$upstream"
    grep '^replace [^(]' "$upstream" || true
  } >"$src/go.mod"
  gobuild "$src" "$logf" go get -tool "$mod/cmd/operator@$SPARK_OPERATOR_VERSION"
  gobuild "$src" "$logf" go mod download
  gobuild "$src" "$logf" go build -trimpath -ldflags "-s -w" -o "$SO_BIN.tmp" "$mod/cmd/operator"
  "$SO_BIN.tmp" --help >>"$logf" 2>&1 || die "the built spark-operator does not run (log $logf)"
  mv -f "$SO_BIN.tmp" "$SO_BIN"
  echo "$key" >"$SO_DIR/.stamp"
  say "spark-operator: built in $((SECONDS - began))s ($(du -h "$SO_BIN" | cut -f1))"
}

# --- 5. images -------------------------------------------------------------------------------------
# stage NAME: the build context: what the Dockerfiles may COPY from the repo (the package's
# sources, pyproject.toml, README.md and docker/, as .gitignore leaves them: an edit elsewhere does
# not rebuild anything) and what the image installs from the host; large files are hard links
# into the cache
CTX_ROOT="$IMG/context"
CTX_PATHS="pyproject.toml README.md .dockerignore docker services operator spark-apps"
stage() {
  local ctx="$CTX_ROOT/$1"
  rm -rf "$ctx"; mkdir -p "$ctx"
  # shellcheck disable=SC2086
  tar -C "$REPO" --exclude-vcs-ignores --exclude='__pycache__' -cf - $CTX_PATHS | tar -C "$ctx" -xf -
  echo "$ctx"
}
link_in() {  # link_in SRC_DIR DEST_DIR GLOB: hard links (copies across filesystems)
  mkdir -p "$2"
  local f
  for f in "$1"/$3; do [ -e "$f" ] || die "nothing matches $1/$3"; ln "$f" "$2/" 2>/dev/null || cp "$f" "$2/"; done
}
context_hash() {
  (cd "$1" && {
    find . -type f ! -name '*.whl' ! -name '*.jar' -print0 | sort -z | xargs -0 sha256sum
    find . -type f \( -name '*.whl' -o -name '*.jar' \) -printf '%p %s\n' | sort
  }) | sha256sum | cut -c1-16
}

BUILT=""
# build NAME DOCKERFILE CTX [--target T] [--build-arg ...]
build() {
  local name="$1" dockerfile="$2" ctx="$3"; shift 3
  local image logf="$LOGS/images-$name.log" key id
  image="$(image_of "$name")"
  key="$(context_hash "$ctx") $* $(for b in "$@"; do case "$b" in *=cryptopipe-*) docker image inspect -f '{{.Id}}' "${b#*=}" ;; esac; done | tr '\n' ' ')"
  id="$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
  if [ -n "$id" ] && stamp_ok "$IMG/stamps/$name" "$key $id"; then
    say "$image: up to date"
  else
    say "$image: docker build -f docker/$dockerfile (log $logf)"
    local began=$SECONDS
    rm -f "$logf" "$IMG/stamps/$name"; mkdir -p "$IMG/stamps"
    run "$logf" docker build --network "$NET" -f "$ctx/docker/$dockerfile" -t "$image" "$@" "$ctx"
    id="$(docker image inspect -f '{{.Id}}' "$image")"
    echo "$key $id" >"$IMG/stamps/$name"
    say "$image: built in $((SECONDS - began))s, $(size_of "$image")"
  fi
  BUILT="$BUILT $image"
}
size_of() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%d MB", $1 / 1000000}'; }

want() { case " $WANT " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

if [ "$PUBLIC" = 1 ]; then
  PY_ARGS=() JAVA_ARGS=() MIN_ARGS=()
else
  base minbase passwd
  base python3 passwd,python3,python3-venv,python-is-python3
  base java17 passwd,python3,python3-venv,python-is-python3,openjdk-17-jre-headless,procps,tini
  PY_ARGS=(--build-arg PYTHON_IMAGE=cryptopipe-debian:bookworm-python3 --build-arg WHEELHOUSE=wheelhouse)
  JAVA_ARGS=(--build-arg PYTHON_IMAGE=cryptopipe-debian:bookworm-java17 --build-arg WHEELHOUSE=wheelhouse)
  MIN_ARGS=(--build-arg BASE_IMAGE=cryptopipe-debian:bookworm-minbase)
fi

# python_image NAME DOCKERFILE WHEELHOUSE_NAME REQUIREMENT...
python_image() {
  local name="$1" dockerfile="$2" wh="$3"; shift 3
  [ "$PUBLIC" = 1 ] || wheelhouse "$wh" "$@"
  local ctx; ctx="$(stage "$name")"
  [ "$PUBLIC" = 1 ] || link_in "$IMG/wheelhouse/$wh" "$ctx/wheelhouse" '*.whl'
  echo "$ctx" >"$IMG/.ctx-$name"
}

if want operator; then
  python_image operator operator.Dockerfile operator ".[operator]"
  build operator operator.Dockerfile "$(cat "$IMG/.ctx-operator")" "${PY_ARGS[@]}"
fi
if want ingestion; then
  python_image ingestion ingestion.Dockerfile ingestion ".[ingestion]"
  build ingestion ingestion.Dockerfile "$(cat "$IMG/.ctx-ingestion")" "${PY_ARGS[@]}"
fi
if want spark || want spark-job; then
  # one context for both: the spark image is the Dockerfile's `spark` stage
  python_image spark-job spark-job.Dockerfile spark-job "." "pyspark==$SPARK_VERSION"
  ctx="$(cat "$IMG/.ctx-spark-job")"
  link_in "$SPARK_JARS" "$ctx/spark-jars" '*.jar'
  want spark && build spark spark-job.Dockerfile "$ctx" --target spark "${JAVA_ARGS[@]}"
  want spark-job && build spark-job spark-job.Dockerfile "$ctx" "${JAVA_ARGS[@]}"
fi
if want spark-operator; then
  spark_operator_bin
  ctx="$(stage spark-operator)"
  link_in "$SO_DIR/bin" "$ctx/spark-operator" spark-operator
  build spark-operator spark-operator.Dockerfile "$ctx" --build-arg "SPARK_IMAGE=$(image_of spark)"
fi
if want kafka; then
  [ -n "$(kafka_version)" ] || die "no Kafka jars in $KAFKA_LIBS: run scripts/bootstrap.sh"
  ctx="$(stage kafka)"
  link_in "$KAFKA_LIBS" "$ctx/kafka-libs" '*.jar'
  if [ "$PUBLIC" = 1 ]; then a=(); else a=(--build-arg JAVA_IMAGE=cryptopipe-debian:bookworm-java17); fi
  build kafka kafka.Dockerfile "$ctx" "${a[@]}"
fi
if want s3; then
  [ -x "$VERSITYGW_BIN" ] || die "no versitygw at $VERSITYGW_BIN: run scripts/bootstrap.sh"
  ctx="$(stage s3)"
  link_in "$(dirname "$VERSITYGW_BIN")" "$ctx/versitygw" versitygw
  build s3 s3.Dockerfile "$ctx" "${MIN_ARGS[@]}"
fi
if want dev-replay; then
  python_image dev-replay dev-replay.Dockerfile dev-replay ".[replay]"
  build dev-replay dev-replay.Dockerfile "$(cat "$IMG/.ctx-dev-replay")" "${PY_ARGS[@]}"
fi

if want dev-prometheus; then
  # dev tooling: Prometheus and promtool built from the Go proxy (see docker/dev-prometheus.Dockerfile)
  run "$LOGS/images-dev-prometheus.log" "$GO_TOOLS" prometheus
  ctx="$(stage dev-prometheus)"
  link_in "$(dirname "$("$GO_TOOLS" --path prometheus)")" "$ctx/prometheus" '*'
  build dev-prometheus dev-prometheus.Dockerfile "$ctx" "${MIN_ARGS[@]}"
fi
if want dev-prometheus-operator || want dev-prometheus-config-reloader; then
  # dev tooling: one Dockerfile, a target per binary (see docker/dev-prometheus-operator.Dockerfile)
  run "$LOGS/images-dev-prometheus-operator.log" "$GO_TOOLS" prometheus-operator
  ctx="$(stage dev-prometheus-operator)"
  link_in "$(dirname "$("$GO_TOOLS" --path prometheus-operator)")" "$ctx/prometheus-operator" '*'
  want dev-prometheus-operator &&
    build dev-prometheus-operator dev-prometheus-operator.Dockerfile "$ctx" --target operator "${MIN_ARGS[@]}"
  want dev-prometheus-config-reloader &&
    build dev-prometheus-config-reloader dev-prometheus-operator.Dockerfile "$ctx" --target config-reloader "${MIN_ARGS[@]}"
fi

# --- 6. into a node's containerd -------------------------------------------------------------------
if [ -n "$LOAD_SOCK" ]; then
  command -v ctr >/dev/null || die "no ctr (containerd's client) on PATH"
  [ -S "$LOAD_SOCK" ] || die "no containerd socket at $LOAD_SOCK"
  for name in $ASKED; do
    image="$(image_of "$name")"
    say "$image -> containerd $LOAD_SOCK (namespace k8s.io)"
    docker save "$image" | ctr -a "$LOAD_SOCK" -n k8s.io images import - >>"$LOGS/images-load.log" 2>&1 \
      || die "ctr images import of $image failed (log $LOGS/images-load.log)"
  done
fi
say "done:$(for i in $BUILT; do printf ' %s' "$i"; done)"
