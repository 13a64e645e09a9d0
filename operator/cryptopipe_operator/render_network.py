"""The pipeline's NetworkPolicies: who may reach its pods, and where its ingestion may connect.

Two policies, both opt-out with ``spec.networkPolicy.enabled``:
- ``{name}-ingress`` selects every pod of the pipeline (ingestion, Spark driver and executors, lake
  monitor) and admits only the pipeline's own pods (Spark's driver and executors talk to each
  other on ports Spark picks) and, on the metrics ports, the monitoring namespaces. The Spark UI
  (4040) and everything else are unreachable from outside the pipeline.
- ``{name}-ingestion-egress`` lets the ingestion open connections to DNS, to the Kafka bootstrap
  servers' ports and to the feed's WebSocket and REST ports (Coinbase: 443), nothing else. A
  NetworkPolicy cannot name hosts, so the ports are what it pins; Kafka brokers' advertised ports
  are taken to be the bootstrap servers' (true for Strimzi's listeners).
Kubelet probes are not subject to these policies on the common CNIs (they come from the node).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from cryptopipe_operator.render_common import PART_OF, Manifest, metadata
from cryptopipe_operator.render_ingestion import COMPONENT as INGESTION_COMPONENT
from cryptopipe_operator.render_ingestion import HTTP_PORT as INGESTION_HTTP_PORT
from cryptopipe_operator.render_monitor import HTTP_PORT as MONITOR_HTTP_PORT
from cryptopipe_operator.render_spark import JOB_METRICS_PORT
from cryptopipe_operator.spec import Pipeline

COMPONENT = "network"
API_VERSION = "networking.k8s.io/v1"
DNS_PORT = 53
_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def ingress_policy_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-ingress"


def egress_policy_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-ingestion-egress"


def _pipeline_pods(pipeline: Pipeline) -> dict[str, object]:
    return {"matchLabels": {"app.kubernetes.io/instance": pipeline.name, "app.kubernetes.io/part-of": PART_OF}}


def _tcp(*ports: int) -> list[dict[str, object]]:
    return [{"protocol": "TCP", "port": port} for port in sorted(set(ports))]


def url_port(url: str | None, default: int = 443) -> int:
    """The port a client of ``url`` connects to (the scheme's default when the URL names none)."""
    if url is None:
        return default
    parts = urlsplit(url)
    return parts.port or _DEFAULT_PORTS.get(parts.scheme, default)


def bootstrap_ports(bootstrap_servers: str) -> list[int]:
    """The ports of ``host:port,host:port`` (the CRD's pattern guarantees a port on each)."""
    return sorted({int(server.rsplit(":", 1)[1]) for server in bootstrap_servers.split(",")})


def render_ingress_policy(pipeline: Pipeline) -> Manifest:
    metrics_from = [{"namespaceSelector": pipeline.spec.network_policy.metrics_namespace_selector}]
    metrics_ports = _tcp(INGESTION_HTTP_PORT, MONITOR_HTTP_PORT, JOB_METRICS_PORT)
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": metadata(pipeline, ingress_policy_name(pipeline), COMPONENT),
        "spec": {
            "podSelector": _pipeline_pods(pipeline),
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": [{"podSelector": _pipeline_pods(pipeline)}]},
                {"from": metrics_from, "ports": metrics_ports},
            ],
        },
    }


def render_ingestion_egress_policy(pipeline: Pipeline) -> Manifest:
    ingestion = pipeline.spec.ingestion
    feed_ports = (url_port(ingestion.ws_url), url_port(ingestion.rest_url))
    dns = [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkPolicy",
        "metadata": metadata(pipeline, egress_policy_name(pipeline), COMPONENT),
        "spec": {
            "podSelector": {
                "matchLabels": {
                    "app.kubernetes.io/instance": pipeline.name,
                    "app.kubernetes.io/component": INGESTION_COMPONENT,
                }
            },
            "policyTypes": ["Egress"],
            "egress": [
                {"ports": dns},
                {"ports": _tcp(*bootstrap_ports(pipeline.kafka_bootstrap))},
                {"ports": _tcp(*feed_ports)},
            ],
        },
    }
