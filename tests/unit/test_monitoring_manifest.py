"""cluster_manifests/monitoring.yaml as stack/node_monitoring.py renders it: it parses, names the
images it is given, selects the chart's monitoring objects by the labels the chart sets, and every
pod it makes fits the `restricted` Pod Security Standard. (The real prometheus-operator reading it,
with the chart installed: tests/components/test_prometheus_operator.py.)"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from cryptopipe_dev.repo import CHART
from cryptopipe_dev.stack import node_monitoring as nm

REFS = {
    "dev-prometheus": "cryptopipe-dev-prometheus:3.16.0",
    "dev-prometheus-operator": "cryptopipe-dev-prometheus-operator:0.85.0",
    "dev-prometheus-config-reloader": "cryptopipe-dev-prometheus-config-reloader:0.85.0",
}


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    rendered = nm.monitoring_manifest(REFS, namespace="mon")
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(rendered) if d}


def test_the_manifest_holds_the_operator_its_rbac_and_a_prometheus_but_no_crd(docs: dict[str, dict[str, Any]]) -> None:
    assert set(docs) == {
        "Namespace/mon",
        "ServiceAccount/prometheus-operator",
        "ClusterRole/cryptopipe-dev-prometheus-operator",
        "ClusterRoleBinding/cryptopipe-dev-prometheus-operator",
        "Deployment/prometheus-operator",
        "ServiceAccount/prometheus",
        "ClusterRole/cryptopipe-dev-prometheus",
        "ClusterRoleBinding/cryptopipe-dev-prometheus",
        f"Prometheus/{nm.PROMETHEUS_NAME}",
    }
    for doc in docs.values():
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == "mon", doc["metadata"]
    for binding in ("cryptopipe-dev-prometheus-operator", "cryptopipe-dev-prometheus"):
        (subject,) = docs[f"ClusterRoleBinding/{binding}"]["subjects"]
        assert subject["namespace"] == "mon"


def test_the_prometheus_selects_by_the_labels_the_chart_sets(docs: dict[str, dict[str, Any]]) -> None:
    spec = docs[f"Prometheus/{nm.PROMETHEUS_NAME}"]["spec"]
    for kind in ("podMonitor", "serviceMonitor", "rule"):
        assert spec[f"{kind}Selector"] == {"matchLabels": dict(nm.CHART_MONITOR_LABELS)}
        assert spec[f"{kind}NamespaceSelector"] == {}, "the chart's objects live in the release's namespace"
    # the chart's name and the part-of label its _helpers.tpl puts on every object
    assert f"name: {nm.CHART_MONITOR_LABELS['app.kubernetes.io/name']}\n" in (CHART / "Chart.yaml").read_text()
    helpers = (CHART / "templates" / "_helpers.tpl").read_text()
    assert f"app.kubernetes.io/part-of: {nm.CHART_MONITOR_LABELS['app.kubernetes.io/part-of']}\n" in helpers


def test_the_images_and_the_prometheus_version_are_the_built_ones(docs: dict[str, dict[str, Any]]) -> None:
    spec = docs[f"Prometheus/{nm.PROMETHEUS_NAME}"]["spec"]
    assert spec["image"] == REFS["dev-prometheus"]
    assert spec["version"] == "v3.16.0"
    (container,) = docs["Deployment/prometheus-operator"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == REFS["dev-prometheus-operator"]
    assert f"--prometheus-config-reloader={REFS['dev-prometheus-config-reloader']}" in container["args"]


def test_every_pod_fits_the_restricted_standard(docs: dict[str, dict[str, Any]]) -> None:
    assert docs["Namespace/mon"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    operator_pod = docs["Deployment/prometheus-operator"]["spec"]["template"]["spec"]
    prometheus = docs[f"Prometheus/{nm.PROMETHEUS_NAME}"]["spec"]
    for pod_security in (operator_pod["securityContext"], prometheus["securityContext"]):
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["runAsUser"] > 0
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in operator_pod["containers"]:
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert not any("hostPath" in v for v in operator_pod.get("volumes", []))


def test_a_missing_image_is_named() -> None:
    with pytest.raises(KeyError, match="dev-prometheus-operator"):
        nm.monitoring_manifest({k: v for k, v in REFS.items() if k != "dev-prometheus-operator"})
