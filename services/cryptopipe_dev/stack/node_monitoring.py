"""Prometheus in the dev node cluster, run by the real prometheus-operator (dev tooling: the chart
ships only its PodMonitor, ServiceMonitor and PrometheusRule; cluster_manifests/monitoring.yaml
holds the rest).

- ``monitoring_manifest``: monitoring.yaml rendered with the images of scripts/build-images.sh
  (Prometheus, prometheus-operator and its config reloader, all from the Go proxy) and the
  ``Prometheus`` selecting the chart's monitoring objects by ``CHART_MONITOR_LABELS``.
- ``prometheus_operator_crds``: the CRDs as prometheus-operator's Go module ships them (copied by
  scripts/build-go-tools.sh), never hand-written.
- ``prometheus_operator_process``: the operator binary as a process on the host (against a cluster
  without a node, where its Deployment cannot run: the kube tests use it).
- ``deploy_monitoring``: all of it on a node cluster, after which the operator chart is installed
  with ``CHART_MONITORING_VALUES`` (``node_addons.install_operator(kube, monitoring=True)``).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from cryptopipe_dev.stack import node as nodemod
from cryptopipe_dev.stack import node_addons
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import ManagedProcess, wait_for

MONITORING_NAMESPACE = "cryptopipe-monitoring"
PROMETHEUS_NAME = "cryptopipe"
# the generated objects: the config Secret (key prometheus.yaml.gz), the rule ConfigMaps, the pods
CONFIG_SECRET = f"prometheus-{PROMETHEUS_NAME}"
RULES_CONFIGMAP_PREFIX = f"prometheus-{PROMETHEUS_NAME}-rulefiles-"
STATEFULSET = f"prometheus-{PROMETHEUS_NAME}"
# the Service prometheus-operator makes for every Prometheus (headless; port "web", 9090): the HTTP
# API through the apiserver's service proxy is /api/v1/namespaces/<ns>/services/<this>/proxy/api/v1/...
PROMETHEUS_SERVICE = "prometheus-operated:web"
# build-images.sh's names of the images this needs in the node's containerd
MONITORING_IMAGES = ("dev-prometheus", "dev-prometheus-operator", "dev-prometheus-config-reloader")
# the labels charts/cryptopipe-operator puts on its PodMonitor, ServiceMonitor and PrometheusRule
# (its _helpers.tpl "labels" with the default name): what the Prometheus selects them by
CHART_MONITOR_LABELS: Mapping[str, str] = {
    "app.kubernetes.io/name": "cryptopipe-operator",
    "app.kubernetes.io/part-of": "cryptopipe",
}
# helm --set values that make the chart render its monitoring objects (install_operator's monitoring=True)
CHART_MONITORING_VALUES = node_addons.CHART_MONITORING_VALUES


def go_tools_script() -> Path:
    from cryptopipe_dev.repo import REPO_ROOT

    return REPO_ROOT / "scripts" / "build-go-tools.sh"


def build_prometheus_operator(*, log_path: Path, timeout: float = 3600) -> Path:
    """``scripts/build-go-tools.sh prometheus-operator`` (idempotent: instant when its stamp
    matches); returns the operator binary."""
    with open(log_path, "ab") as logf:
        subprocess.run(
            [str(go_tools_script()), "prometheus-operator"],
            stdout=logf,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=timeout,
        )
    return prometheus_operator_binary()


def prometheus_operator_binary() -> Path:
    out = subprocess.run(
        [str(go_tools_script()), "--path", "prometheus-operator"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip())


def prometheus_operator_crds() -> list[Path]:
    """The monitoring.coreos.com CRDs from the prometheus-operator module (next to its binary)."""
    crds = sorted((prometheus_operator_binary().parent.parent / "crds").glob("monitoring.coreos.com_*.yaml"))
    if not crds:
        raise FileNotFoundError("no prometheus-operator CRDs: run scripts/build-go-tools.sh prometheus-operator")
    return crds


def monitoring_manifest(
    refs: Mapping[str, str],
    *,
    namespace: str = MONITORING_NAMESPACE,
    selector: Mapping[str, str] = CHART_MONITOR_LABELS,
) -> str:
    """monitoring.yaml filled in; ``refs`` is build-images.sh's {NAME: IMAGE:TAG}."""
    prometheus = refs["dev-prometheus"]
    return node_addons.render(
        "monitoring.yaml",
        NAMESPACE=namespace,
        PROMETHEUS_NAME=PROMETHEUS_NAME,
        PROMETHEUS_IMAGE=prometheus,
        PROMETHEUS_VERSION="v" + prometheus.rsplit(":", 1)[1],
        OPERATOR_IMAGE=refs["dev-prometheus-operator"],
        RELOADER_IMAGE=refs["dev-prometheus-config-reloader"],
        MONITOR_SELECTOR=json.dumps({"matchLabels": dict(selector)}),
    )


def prometheus_operator_process(
    binary: Path,
    *,
    env: Mapping[str, str],
    reloader_image: str,
    listen_port: int,
    log_path: Path,
    die_with_parent: bool = False,
) -> ManagedProcess:
    """The operator on the host, watching every namespace. Not started. It has no --kubeconfig flag:
    it reads $KUBECONFIG, which ``env`` must hold."""
    if not env.get("KUBECONFIG"):
        raise ValueError("prometheus-operator finds the cluster through $KUBECONFIG: env has none")
    return ManagedProcess(
        [
            str(binary),
            f"--prometheus-config-reloader={reloader_image}",
            f"--web.listen-address=127.0.0.1:{listen_port}",
            "--log-format=json",
        ],
        log_path=log_path,
        env=dict(env),
        name="prometheus-operator",
        die_with_parent=die_with_parent,
    )


def deploy_monitoring(
    kube: KubeControlPlane, node: nodemod.KubeNode, *, log_path: Path, timeout: float = 300
) -> dict[str, float]:
    """On a node cluster: the images into the node's containerd, the CRDs, the operator and the
    Prometheus; returns once Prometheus' StatefulSet is rolled out (timings in seconds). Install
    (or upgrade) the operator chart with CHART_MONITORING_VALUES for it to have something to scrape."""
    timings: dict[str, float] = {}
    began = time.monotonic()
    node_addons.load_images(node, MONITORING_IMAGES, log_path=log_path)
    timings["images_load_s"] = round(time.monotonic() - began, 1)
    build_prometheus_operator(log_path=log_path)
    kube.install_crds(prometheus_operator_crds(), timeout=120)
    node_addons.apply(kube, monitoring_manifest(node_addons.image_refs()))
    applied = time.monotonic()
    node_addons.rollout(kube, MONITORING_NAMESPACE, "deployment/prometheus-operator", timeout)
    timings["operator_ready_s"] = round(time.monotonic() - applied, 1)

    def statefulset_made() -> bool:
        got = kube.kubectl("-n", MONITORING_NAMESPACE, "get", "statefulset", STATEFULSET, check=False)
        return got.returncode == 0

    wait_for(statefulset_made, timeout, f"statefulset {STATEFULSET} made by prometheus-operator", interval=1.0)
    node_addons.rollout(kube, MONITORING_NAMESPACE, f"statefulset/{STATEFULSET}", timeout)
    timings["prometheus_ready_s"] = round(time.monotonic() - applied, 1)
    timings["monitoring_s"] = round(time.monotonic() - began, 1)
    return timings
