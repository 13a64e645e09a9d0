"""What runs *in* the dev node cluster (``cryptopipe dev cluster up --node``), next to the node of
stack/node.py. Dev tooling: the manifests live in ``cryptopipe_dev/cluster_manifests`` and never in
the chart.

- ``deploy_dns``: CoreDNS (the FROM-scratch image scripts/build-node.sh makes from its binary,
  imported into the node's containerd) as a Deployment in kube-system and the ``kube-dns`` Service
  at 10.96.0.10, the nameserver kubelet gives every pod. Always part of ``up --node``.
- ``deploy_platform_deps`` (``up --node --platform``): the project's images loaded into the node's
  containerd (``scripts/build-images.sh --load-into``, only those it does not hold yet), then the
  pipelines' namespace labelled to enforce the ``restricted`` Pod Security Standard, a real Apache
  Kafka broker (KRaft) as a StatefulSet with Strimzi's bootstrap Service name, and the S3 server
  (versitygw, standing in for MinIO) as a Deployment over an emptyDir, with its Service, its
  credentials Secret and the lake bucket. The KafkaTopic stand-in (cryptopipe_dev.topic_controller)
  runs on the host against that broker: ``topic_controller_for``. Then the user's path: the operator
  by ``helm upgrade --install`` of its chart with the image built here (``install_operator``; it
  replaces the operator process ``up`` runs on the host without --platform), and the dev replay
  server in a pod serving recordings (``deploy_replay``), which a CryptoPipeline's wsUrl/restUrl name.
- Prometheus (built from the Go proxy, in an image) run by the real prometheus-operator (also from
  the Go proxy, its CRDs from its module), selecting the chart's PodMonitor, ServiceMonitor and
  PrometheusRule:
  ``node_monitoring.deploy_monitoring`` (a module of its own, which uses this one's helpers), then
  ``install_operator(kube, monitoring=True)``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from cryptopipe_dev.stack import node as nodemod
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import ManagedProcess, wait_for

log = logging.getLogger(__name__)

MANIFESTS = Path(__file__).resolve().parents[1] / "cluster_manifests"
CLUSTER_DOMAIN = "cluster.local"

# the pipelines' namespace and what a CryptoPipeline there names (see platform-deps.yaml)
PLATFORM_NAMESPACE = "cryptopipe"
KAFKA_CLUSTER = "cryptopipe"  # spec.kafka.clusterName -> Service cryptopipe-kafka-bootstrap:9092
S3_SERVICE = "s3"
S3_PORT = 7070
S3_SECRET = "s3-credentials"  # spec.sink.credentialsSecretRef.name (keys accessKey / secretKey)
S3_ACCESS_KEY = "cryptopipe"
S3_SECRET_KEY = "cryptopipe-dev-secret"  # a dev cluster's, on this machine only
LAKE_BUCKET = "lake"
# the images of scripts/build-images.sh (its NAME) each part needs: the dependencies, the operator,
# the pipeline's ingestion (and lake monitor) and the dev replay server
DEPS_IMAGES = ("kafka", "s3", "operator", "ingestion", "dev-replay")
OPERATOR_NAMESPACE = "cryptopipe-system"
OPERATOR_RELEASE = "cryptopipe-operator"
REPLAY_PORT = 8765
# The operator refreshes each pipeline's status from its children every status_interval_s (10 s by
# default): a child that is unavailable for less than that (a replaced ingestion pod is Ready again
# after its start plus a passing readiness probe, every 5 s: 6-20 s here) may never show in Ready.
# The dev cluster's operator samples every 2 s, so that such a window is seen (docs/cluster.md).
OPERATOR_ENV = ({"name": "CRYPTOPIPE_OPERATOR_STATUS_INTERVAL_S", "value": "2"},)
# helm --set values that make the chart render its PodMonitor, ServiceMonitor and PrometheusRule
CHART_MONITORING_VALUES = (
    "podMonitor.enabled=true",
    "prometheusRule.enabled=true",
    "serviceMonitor.enabled=true",
)


def render(manifest: str, **values: object) -> str:
    """A manifest of cluster_manifests/ with its ``${NAME}`` placeholders filled (all required)."""
    return Template((MANIFESTS / manifest).read_text()).substitute({k: str(v) for k, v in values.items()})


def apply(kube: KubeControlPlane, text: str) -> None:
    kube.kubectl("apply", "--server-side", "--field-manager=cryptopipe-dev-cluster", "-f", "-", input=text)


def rollout(kube: KubeControlPlane, namespace: str, what: str, timeout: float) -> None:
    kube.kubectl("-n", namespace, "rollout", "status", what, f"--timeout={int(timeout)}s", timeout=timeout + 15)


def image_present(node: nodemod.KubeNode, ref: str) -> bool:
    """``ref`` (``name:tag``, as a pod names it) is in the node's containerd (namespace k8s.io)."""
    full = ref if "/" in ref else f"docker.io/library/{ref}"
    names = node.ctr("images", "ls", "-q", check=False, timeout=30).stdout.split()
    return full in names or ref in names


# --- CoreDNS ----------------------------------------------------------------------------------------


def coredns_image() -> tuple[str, Path]:
    images = nodemod.node_images()
    ref_file = images / "coredns.ref"
    if not ref_file.is_file():
        raise nodemod.paths.MissingDependency(f"the node needs {ref_file}: run scripts/build-node.sh (as root)")
    ref = ref_file.read_text().strip()
    return ref, images / f"coredns-{ref.rsplit(':', 1)[1]}.tar"


def deploy_dns(kube: KubeControlPlane, node: nodemod.KubeNode, *, timeout: float = 120) -> float:
    """CoreDNS and the kube-dns Service; returns once the Deployment is rolled out (seconds taken)."""
    began = time.monotonic()
    ref, tarball = coredns_image()
    if not image_present(node, ref):
        node.ctr("images", "import", str(tarball), timeout=120)
    apply(kube, render("coredns.yaml", COREDNS_IMAGE=ref, DNS_IP=nodemod.CLUSTER_DNS_IP, CLUSTER_DOMAIN=CLUSTER_DOMAIN))
    rollout(kube, "kube-system", "deployment/coredns", timeout)
    return round(time.monotonic() - began, 1)


# --- the platform's dependencies -----------------------------------------------------------------------


def image_refs() -> dict[str, str]:
    """``scripts/build-images.sh --list``: {NAME: IMAGE:TAG}."""
    from cryptopipe_dev.repo import REPO_ROOT

    out = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-images.sh"), "--list"], capture_output=True, text=True, check=True
    ).stdout
    return dict(line.split(None, 1) for line in out.splitlines() if line.strip())


def load_images(node: nodemod.KubeNode, names: tuple[str, ...], *, log_path: Path) -> list[str]:
    """Import the project images ``names`` (build-images.sh's NAMEs) the node's containerd does not
    hold yet, through ``scripts/build-images.sh --load-into`` (which builds them first if they are
    out of date). Returns the names loaded."""
    from cryptopipe_dev.repo import REPO_ROOT

    refs = image_refs()
    missing = [name for name in names if not image_present(node, refs[name])]
    if missing:
        with open(log_path, "ab") as logf:
            subprocess.run(
                [
                    str(REPO_ROOT / "scripts" / "build-images.sh"),
                    "--load-into",
                    str(node.containerd_socket),
                    *missing,
                ],
                stdout=logf,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=3600,
            )
        still = [name for name in missing if not image_present(node, refs[name])]
        if still:
            raise RuntimeError(f"images not in the node's containerd after loading: {still} (log {log_path})")
    return missing


@dataclass(frozen=True)
class PlatformDeps:
    namespace: str
    kafka_bootstrap_ip: str  # the bootstrap Service's ClusterIP (reachable from the host too)
    s3_endpoint_in_cluster: str
    s3_endpoint_from_host: str
    timings: dict[str, float]

    @property
    def kafka_bootstrap_from_host(self) -> str:
        return f"{self.kafka_bootstrap_ip}:9092"


def deploy_platform_deps(
    kube: KubeControlPlane,
    node: nodemod.KubeNode,
    *,
    log_path: Path,
    namespace: str = PLATFORM_NAMESPACE,
    timeout: float = 300,
) -> PlatformDeps:
    """Images, the restricted namespace, Kafka, S3 and the lake bucket (see the module docstring)."""
    timings: dict[str, float] = {}
    began = time.monotonic()
    load_images(node, DEPS_IMAGES, log_path=log_path)
    timings["images_load_s"] = round(time.monotonic() - began, 1)
    refs = image_refs()
    apply(
        kube,
        render(
            "platform-deps.yaml",
            NAMESPACE=namespace,
            KAFKA_CLUSTER=KAFKA_CLUSTER,
            KAFKA_IMAGE=refs["kafka"],
            S3_IMAGE=refs["s3"],
            S3_SERVICE=S3_SERVICE,
            S3_PORT=S3_PORT,
            S3_SECRET=S3_SECRET,
            S3_ACCESS_KEY=S3_ACCESS_KEY,
            S3_SECRET_KEY=S3_SECRET_KEY,
        ),
    )
    applied = time.monotonic()
    rollout(kube, namespace, f"statefulset/{KAFKA_CLUSTER}-kafka", timeout)
    timings["kafka_ready_s"] = round(time.monotonic() - applied, 1)
    rollout(kube, namespace, f"deployment/{S3_SERVICE}", timeout)
    timings["s3_ready_s"] = round(time.monotonic() - applied, 1)
    kafka_ip = _cluster_ip(kube, namespace, f"{KAFKA_CLUSTER}-kafka-bootstrap")
    s3_ip = _cluster_ip(kube, namespace, S3_SERVICE)
    deps = PlatformDeps(
        namespace=namespace,
        kafka_bootstrap_ip=kafka_ip,
        s3_endpoint_in_cluster=f"http://{S3_SERVICE}.{namespace}.svc:{S3_PORT}",
        s3_endpoint_from_host=f"http://{s3_ip}:{S3_PORT}",
        timings=timings,
    )
    _create_bucket(deps.s3_endpoint_from_host, LAKE_BUCKET, timeout=60)
    timings["platform_deps_s"] = round(time.monotonic() - began, 1)
    return deps


def _cluster_ip(kube: KubeControlPlane, namespace: str, service: str) -> str:
    got = kube.kubectl("-n", namespace, "get", "service", service, "-o", "json")
    return str(json.loads(got.stdout)["spec"]["clusterIP"])


def s3_connection(endpoint: str) -> Any:
    from cryptopipe.lake.s3 import S3Connection

    return S3Connection(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY)


def _create_bucket(endpoint: str, bucket: str, *, timeout: float) -> None:
    from cryptopipe_dev.stack.s3server import boto3_client

    client = boto3_client(s3_connection(endpoint))

    def made() -> bool:
        try:
            client.create_bucket(Bucket=bucket)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        except client.exceptions.BucketAlreadyExists:
            client.head_bucket(Bucket=bucket)
        return True

    wait_for(made, timeout, f"bucket {bucket} at {endpoint}", interval=1.0)


def topic_controller_for(kube: KubeControlPlane, deps: PlatformDeps, *, log_path: Path) -> ManagedProcess:
    """The KafkaTopic stand-in (not Strimzi) on the host, for the pipelines' namespace, against the
    broker in the cluster (bootstrap through the Service's ClusterIP; the broker then advertises
    its pod IP, which the host reaches over the node's bridge). Not started yet."""
    from cryptopipe_dev.stack.topic_controller import topic_controller_process

    return topic_controller_process(
        deps.kafka_bootstrap_from_host,
        log_path=log_path,
        env=kube.env(),
        namespaces=[deps.namespace],
        cluster=KAFKA_CLUSTER,
        interval=10,
    )


# --- the operator, by its chart -------------------------------------------------------------------


def helm(kube: KubeControlPlane, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(kube.helm_path), *args], capture_output=True, text=True, timeout=timeout, env=kube.env()
    )
    if result.returncode != 0:
        raise RuntimeError(f"helm {' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def install_operator(
    kube: KubeControlPlane,
    *,
    tag: str | None = None,
    namespace: str = OPERATOR_NAMESPACE,
    monitoring: bool = False,
    timeout: float = 300,
) -> float:
    """``helm upgrade --install`` of charts/cryptopipe-operator with the operator image built here
    (already in the node's containerd: pullPolicy Never). The chart's CRD is already installed by
    ``up``, so helm leaves it alone. ``monitoring``: with its PodMonitor, ServiceMonitor and
    PrometheusRule (their CRDs must be installed: ``deploy_monitoring`` first). Returns the seconds
    until the operator's Deployment is rolled out."""
    from cryptopipe_dev.repo import REPO_ROOT

    began = time.monotonic()
    extra = [arg for value in CHART_MONITORING_VALUES for arg in ("--set", value)] if monitoring else []
    repository, built_tag = image_refs()["operator"].rsplit(":", 1)
    helm(
        kube,
        "upgrade",
        "--install",
        OPERATOR_RELEASE,
        str(REPO_ROOT / "charts" / "cryptopipe-operator"),
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        f"image.repository={repository}",
        "--set",
        f"image.tag={tag or built_tag}",
        "--set",
        "image.pullPolicy=Never",
        "--set-json",
        f"operator.extraEnv={json.dumps(list(OPERATOR_ENV))}",
        *extra,
        "--wait",
        "--timeout",
        f"{int(timeout)}s",
        timeout=timeout + 30,
    )
    return round(time.monotonic() - began, 1)


# --- the replay server ------------------------------------------------------------------------------


def deploy_replay(
    kube: KubeControlPlane,
    recordings: list[Path],
    *,
    name: str = "replay",
    namespace: str = PLATFORM_NAMESPACE,
    speed: str = "max",
    timeout: float = 120,
) -> dict[str, str]:
    """The dev replay server in a pod, serving ``recordings`` (files on this machine, put in a
    ConfigMap: each must be well under 1 MiB). Returns the in-cluster ``ws_url`` and ``rest_url``
    for a CryptoPipeline's spec.ingestion."""
    args = [*[f"/recordings/{p.name}" for p in recordings], "--speed", speed]
    files = {p.name: p.read_text() for p in recordings}
    return _deploy_replay_server(kube, name, namespace, args, files, timeout)


def deploy_live_replay(
    kube: KubeControlPlane,
    products: list[str],
    *,
    rate: float,
    name: str = "live-replay",
    namespace: str = PLATFORM_NAMESPACE,
    timeout: float = 120,
) -> dict[str, str]:
    """The dev replay server in a pod serving an endless synthetic feed at wall-clock time (``rate``
    trades per second over ``products``): a pipeline that streams like a live one, for as long as
    it runs. Returns ``ws_url`` and ``rest_url`` as ``deploy_replay`` does."""
    args = [
        "--synthetic",
        "--products",
        ",".join(products),
        "--rate",
        str(rate),
        "--duration",
        "0",  # endless
        "--start-time",
        f"{time.time():.3f}",
        "--speed",
        "1",
    ]
    return _deploy_replay_server(kube, name, namespace, args, {}, timeout)


def _deploy_replay_server(
    kube: KubeControlPlane, name: str, namespace: str, source_args: list[str], files: dict[str, str], timeout: float
) -> dict[str, str]:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{name}-recordings", "namespace": namespace},
        "data": files,
    }
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(configmap))
    args = [
        "serve",
        *source_args,
        "--host",
        "0.0.0.0",
        "--port",
        str(REPLAY_PORT),
        "--control-port",
        str(REPLAY_PORT + 1),
    ]
    image = image_refs()["dev-replay"]
    apply(kube, render("replay.yaml", NAME=name, NAMESPACE=namespace, IMAGE=image, ARGS=json.dumps(args)))
    rollout(kube, namespace, f"deployment/{name}", timeout)
    host = f"{name}.{namespace}.svc"
    return {"ws_url": f"ws://{host}:{REPLAY_PORT}", "rest_url": f"http://{host}:{REPLAY_PORT}"}


Kubectl = Callable[..., subprocess.CompletedProcess[str]]

__all__ = [
    "LAKE_BUCKET",
    "PLATFORM_NAMESPACE",
    "PlatformDeps",
    "deploy_dns",
    "deploy_live_replay",
    "deploy_platform_deps",
    "deploy_replay",
    "install_operator",
    "load_images",
    "render",
    "topic_controller_for",
]
