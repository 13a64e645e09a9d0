#!/usr/bin/env bash
# A kind cluster with the platform's dependencies, for the skaffold dev loop (needs Docker, kind,
# kubectl, helm and network access to the charts' registries; see docs/dependencies.md).
#   scripts/kind-up.sh            # create (or reuse) the cluster "cryptopipe" and install the deps
#   scripts/kind-up.sh --down     # delete it
# Then: skaffold dev, and kubectl -n cryptopipe apply -f manifests/examples/cryptopipeline-kind.yaml
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER_NAME:-cryptopipe}"
DEPS="$REPO/charts/dependencies"
# pinned, the same as docs/dependencies.md
STRIMZI_VERSION=0.51.0
SPARK_OPERATOR_VERSION=2.5.2
MINIO_VERSION=5.4.0

SCRIPT_NAME=kind-up
# shellcheck source=scripts/lib.sh
. "$REPO/scripts/lib.sh"
need() { command -v "$1" >/dev/null || die "$1 is required (not found on PATH)"; }

if [[ "${1:-}" == "--down" ]]; then
  need kind
  kind delete cluster --name "$CLUSTER"
  exit 0
fi
for tool in docker kind kubectl helm; do need "$tool"; done
docker info >/dev/null 2>&1 || die "Docker is not running"

if kind get clusters | grep -qx "$CLUSTER"; then
  say "cluster $CLUSTER exists: reusing it"
else
  say "creating kind cluster $CLUSTER ($REPO/deploy/kind-config.yaml)"
  kind create cluster --name "$CLUSTER" --config "$REPO/deploy/kind-config.yaml" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

for ns in cryptopipe minio; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
done

say "Strimzi $STRIMZI_VERSION + a one-node KRaft Kafka"
helm upgrade --install strimzi oci://quay.io/strimzi-helm/strimzi-kafka-operator --version "$STRIMZI_VERSION" \
  -n cryptopipe -f "$DEPS/strimzi-values.yaml" --wait
kubectl -n cryptopipe apply -f "$REPO/manifests/kafka/kafka-cluster-dev.yaml"

say "Spark operator $SPARK_OPERATOR_VERSION"
helm repo add spark-operator https://kubeflow.github.io/spark-operator --force-update >/dev/null
helm upgrade --install spark-operator spark-operator/spark-operator --version "$SPARK_OPERATOR_VERSION" \
  -n spark-operator --create-namespace -f "$DEPS/spark-operator-values.yaml" --wait

say "MinIO $MINIO_VERSION (dev credentials; never reuse them)"
secret_key="dev-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
if ! kubectl -n minio get secret minio-root >/dev/null 2>&1; then
  kubectl -n minio create secret generic minio-root --from-literal=rootUser=admin \
    --from-literal=rootPassword="root-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
fi
if ! kubectl -n cryptopipe get secret minio-credentials >/dev/null 2>&1; then
  kubectl -n minio create secret generic minio-credentials-for-minio --from-literal=secretKey="$secret_key"
  kubectl -n cryptopipe create secret generic minio-credentials \
    --from-literal=accessKey=cryptopipe --from-literal=secretKey="$secret_key"
fi
# the Secret's opt-in as sink credentials (the chart's admission policy requires it)
kubectl -n cryptopipe label --overwrite secret minio-credentials cryptopipeline.io/sink-credentials=true
helm repo add minio https://charts.min.io/ --force-update >/dev/null
helm upgrade --install minio minio/minio --version "$MINIO_VERSION" -n minio \
  -f "$DEPS/minio-values.yaml" --set persistence.size=5Gi --set resources.requests.memory=256Mi --wait

say "waiting for Kafka"
kubectl -n cryptopipe wait kafka/cryptopipe --for=condition=Ready --timeout=600s

say "ready. Next: skaffold dev   (then: kubectl -n cryptopipe apply -f manifests/examples/cryptopipeline-kind.yaml)"
