"""tests/support/cluster_prometheus.ingress_admits, the stand-in for NetworkPolicy enforcement the
node test uses (the dev node's bridge CNI enforces none): on the operator's rendered ingress
policy, it admits the monitoring namespace the selector names, on the metrics ports only, and
refuses another namespace, such as the dev cluster's cryptopipe-monitoring under the default."""

from __future__ import annotations

from cryptopipe_operator.render_network import render_ingress_policy
from tests.support.cluster_prometheus import ingress_admits
from tests.unit.test_operator_render import pipeline

MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
DEV_MONITORING = {"kubernetes.io/metadata.name": "cryptopipe-monitoring"}


def test_the_default_policy_admits_the_namespace_named_monitoring_on_the_metrics_ports_only() -> None:
    policy = render_ingress_policy(pipeline(monitor={"enabled": True}))
    assert ingress_admits(policy, MONITORING, 8080)  # ingestion, lake monitor
    assert ingress_admits(policy, MONITORING, 9108)  # Spark driver
    assert not ingress_admits(policy, MONITORING, 4040)  # the Spark UI stays private
    assert not ingress_admits(policy, DEV_MONITORING, 8080)


def test_a_metrics_namespace_selector_admits_the_dev_clusters_prometheus() -> None:
    selector = {"matchLabels": DEV_MONITORING}
    policy = render_ingress_policy(pipeline(networkPolicy={"metricsNamespaceSelector": selector}))
    assert ingress_admits(policy, {**DEV_MONITORING, "pod-security.kubernetes.io/enforce": "restricted"}, 9108)
    assert not ingress_admits(policy, MONITORING, 9108)
