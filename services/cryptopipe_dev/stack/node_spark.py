"""The Kubeflow spark-operator (v2.5.2) in the dev node cluster (``up --node --platform``), so the
SparkApplication a CryptoPipeline's operator writes is really submitted: the driver and executor
pods run on the node and write candles to the S3 pod. Dev tooling, like stack/node_addons.py.

``deploy_spark_operator``: the Spark images (the job's and spark-operator's) into the node's
containerd, the CRDs spark-operator's controller watches besides SparkApplication (its manager
refuses to start without ScheduledSparkApplication and SparkConnect; SparkApplication's own comes
from ../shared/crds with the control plane), then ``cluster_manifests/spark-operator.yaml`` (the
project's own manifests: RBAC limited to the pipelines' namespace, the webhook Service and the
webhook configurations), and it returns once the webhook serves with its CA in the configurations'
caBundle and the controller is ready.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from cryptopipe_dev.stack import node as nodemod
from cryptopipe_dev.stack import node_addons, paths
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import wait_for

SPARK_OPERATOR_VERSION = "v2.5.2"
NAMESPACE = "spark-operator"
NAME = "spark-operator"
WEBHOOK_PORT = 9443
# build-images.sh's NAMEs: the job (the SparkApplication's image) and spark-operator's
SPARK_IMAGES = ("spark-job", "spark-operator")
# the CRDs besides SparkApplication, from the spark-operator module scripts/build-images.sh fetched
# (Apache-2.0, upstream's files as published, not copied into this repository)
EXTRA_CRDS = ("sparkoperator.k8s.io_scheduledsparkapplications.yaml", "sparkoperator.k8s.io_sparkconnects.yaml")


def upstream_crd_dir() -> Path:
    return (
        paths.cache_dir()
        / "go"
        / "mod"
        / "github.com"
        / "kubeflow"
        / "spark-operator"
        / f"v2@{SPARK_OPERATOR_VERSION}"
        / "charts"
        / "spark-operator-chart"
        / "crds"
    )


def extra_crds() -> list[Path]:
    found = [upstream_crd_dir() / name for name in EXTRA_CRDS]
    missing = [p for p in found if not p.is_file()]
    if missing:
        raise paths.MissingDependency(
            f"spark-operator's CRDs missing: {missing} (scripts/build-images.sh spark-operator fetches its module)"
        )
    return found


def deploy_spark_operator(
    kube: KubeControlPlane,
    node: nodemod.KubeNode,
    *,
    log_path: Path,
    job_namespace: str = node_addons.PLATFORM_NAMESPACE,
    timeout: float = 300,
) -> dict[str, float]:
    """See the module docstring. Returns the timings (seconds)."""
    timings: dict[str, float] = {}
    began = time.monotonic()
    node_addons.load_images(node, SPARK_IMAGES, log_path=log_path)
    timings["spark_images_load_s"] = round(time.monotonic() - began, 1)
    for crd in extra_crds():
        kube.kubectl("apply", "--server-side", "--field-manager=cryptopipe-dev-cluster", "-f", str(crd))
    applied = time.monotonic()
    node_addons.apply(
        kube,
        node_addons.render(
            "spark-operator.yaml",
            NAME=NAME,
            NAMESPACE=NAMESPACE,
            JOB_NAMESPACE=job_namespace,
            IMAGE=node_addons.image_refs()["spark-operator"],
            WEBHOOK_PORT=WEBHOOK_PORT,
        ),
    )
    node_addons.rollout(kube, NAMESPACE, f"deployment/{NAME}-webhook", timeout)
    wait_for(lambda: _ca_bundles_set(kube), 60, "spark-operator's webhook CA in its webhook configurations")
    node_addons.rollout(kube, NAMESPACE, f"deployment/{NAME}-controller", timeout)
    timings["spark_operator_ready_s"] = round(time.monotonic() - applied, 1)
    return timings


def _ca_bundles_set(kube: KubeControlPlane) -> bool:
    for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
        got = json.loads(kube.kubectl("get", kind, f"{NAME}-webhook", "-o", "json").stdout)
        if not all(hook.get("clientConfig", {}).get("caBundle") for hook in got.get("webhooks", [])):
            return False
    return True
