"""The Prometheus that ``cryptopipe dev cluster up --node --platform`` runs (prometheus-operator's,
in the namespace cryptopipe-monitoring), asked through the kube-apiserver's service proxy: the same
HTTP API a Grafana datasource would use, with the cluster's own credentials (no port on the host).

Also a live pipeline for it to scrape: the dev replay server streaming a synthetic feed at
wall-clock time, and a CryptoPipeline with its lake monitor on, so every component the dashboards
read (ingestion, Spark driver, lake monitor, the operator) runs.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

from cryptopipe_dev.commands.cluster_e2e import platform_pipeline
from cryptopipe_dev.stack import node_monitoring

Kubectl = Callable[..., subprocess.CompletedProcess[str]]


class PrometheusError(AssertionError):
    """Prometheus refused the request (a PromQL error): fails a test at once."""


class PrometheusUnavailable(Exception):
    """The proxy did not reach Prometheus (its pod not ready: on a loaded machine its probes time
    out and the Service loses its endpoint for a while): worth asking again."""


# what kubectl prints when the apiserver could not reach the pod (not a PromQL error, a 400)
_UNAVAILABLE = ("ServiceUnavailable", "no endpoints available", "timeout", "connection refused", "InternalError")


class ClusterPrometheus:
    """``kubectl get --raw /api/v1/namespaces/<ns>/services/prometheus-operated:web/proxy/api/v1/...``"""

    def __init__(
        self,
        kubectl: Kubectl,
        namespace: str = node_monitoring.MONITORING_NAMESPACE,
        service: str = node_monitoring.PROMETHEUS_SERVICE,
    ) -> None:
        self.kubectl = kubectl
        self.base = f"/api/v1/namespaces/{namespace}/services/{service}/proxy/api/v1/"

    def api(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        got = self.kubectl("get", "--raw", url)
        if got.returncode != 0:
            error = PrometheusUnavailable if any(s in got.stderr for s in _UNAVAILABLE) else PrometheusError
            raise error(f"GET {url}: {got.stderr.strip()}")
        body = json.loads(got.stdout)
        if body.get("status") != "success":
            raise PrometheusError(f"GET {url}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", {"query": expr})
        result = data["result"]
        # a scalar or string answer is one value, not a vector: treat it as data
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    def active_targets(self) -> list[dict[str, Any]]:
        return list(self.api("targets", {"state": "active"})["activeTargets"])

    def rule_groups(self) -> list[dict[str, Any]]:
        return list(self.api("rules", {"type": "alert"})["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.api("alerts")["alerts"])

    def when_available(self, call: Callable[[], Any], timeout: float = 300) -> Any:
        """``call()``, asked again while Prometheus is unavailable (at most ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return call()
            except PrometheusUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(5)


def live_pipeline(
    name: str,
    namespace: str,
    urls: Mapping[str, str],
    products: list[str],
    platform: Mapping[str, Any],
    monitoring_namespace: str = node_monitoring.MONITORING_NAMESPACE,
) -> dict[str, Any]:
    """A CryptoPipeline of the live feed at ``urls``, with the lake monitor scanning every 10 s, the
    Spark pods small enough for the 2-CPU node, and its NetworkPolicy admitting the Prometheus
    namespace to the metrics ports (the default admits a namespace named ``monitoring``)."""
    manifest = platform_pipeline(name, namespace, urls, platform, feed="exchange", products=products)
    manifest["spec"] |= {
        "windows": ["1m"],
        "watermark": "10s",
        "trigger": "5s",
        "monitor": {
            "enabled": True,
            "imagePullPolicy": "Never",
            "interval": "10s",
            "lookback": "30m",
            "resources": {"requests": {"cpu": "50m"}},
        },
        "networkPolicy": {
            "metricsNamespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": monitoring_namespace}}
        },
    }
    return manifest


def ingress_admits(policy: Mapping[str, Any], namespace_labels: Mapping[str, str], port: int) -> bool:
    """Whether the NetworkPolicy's ingress rules admit a pod of a namespace with ``namespace_labels``
    (any pod of it) on TCP ``port``, by the rules' namespaceSelector.matchLabels and ports. The
    node's bridge CNI does not enforce policies: this evaluates what an enforcing CNI would."""
    for rule in policy["spec"].get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports):
            continue
        for peer in rule.get("from") or []:
            selector = peer.get("namespaceSelector")
            if selector is None or peer.get("podSelector") or selector.get("matchExpressions"):
                continue  # same-namespace peers, or selectors this evaluator does not read
            if all(namespace_labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
                return True
    return False


def pod_memory_mb(kubectl: Kubectl, namespace: str) -> dict[str, float]:
    """Each running pod of ``namespace`` with its memory cgroup's usage (MB; cgroup v1, kubelet's
    cgroupfs layout ``kubepods[/<qos>]/pod<uid>``): a measurement to print, never asserted."""
    from glob import glob

    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    usage = {}
    for pod in pods:
        uid = pod["metadata"]["uid"]
        for path in glob(f"/sys/fs/cgroup/memory/kubepods*/**/pod{uid}/memory.usage_in_bytes", recursive=True):
            with open(path) as f:
                usage[pod["metadata"]["name"]] = round(int(f.read()) / 1e6, 1)
    return usage
