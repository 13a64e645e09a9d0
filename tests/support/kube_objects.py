"""Read what is in the test control plane (a pipeline, the children the operator made of it, their
conditions and events) and play the parts that do not run there (a kubelet patching a status)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from cryptopipe_dev.stack.kube import KubeControlPlane
from tests.support.operator_process import eventually

PATHS = {
    "KafkaTopic": "/apis/kafka.strimzi.io/v1/namespaces/{ns}/kafkatopics",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "SparkApplication": "/apis/sparkoperator.k8s.io/v1beta2/namespaces/{ns}/sparkapplications",
    "Service": "/api/v1/namespaces/{ns}/services",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "CryptoPipeline": "/apis/cryptopipeline.io/v1alpha1/namespaces/{ns}/cryptopipelines",
}
CHILD_KINDS = ("KafkaTopic", "ServiceAccount", "RoleBinding", "Service", "Deployment", "SparkApplication")


def get(kube: KubeControlPlane, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    code, body = kube.api(f"{PATHS[kind].format(ns=namespace)}/{name}")
    if code == 404:
        return None
    assert code == 200, body
    return json.loads(body)


def items(kube: KubeControlPlane, kind: str, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    query = f"?labelSelector={selector}" if selector else ""
    code, body = kube.api(f"{PATHS[kind].format(ns=namespace)}{query}")
    assert code == 200, body
    return json.loads(body)["items"]


def patch_status(kube: KubeControlPlane, resource: str, namespace: str, status: Mapping[str, Any]) -> None:
    kube.kubectl(
        "patch", resource, "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps({"status": status})
    )


def conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def events(kube: KubeControlPlane, namespace: str, name: str) -> list[dict[str, Any]]:
    found = kube.get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={name}")
    return found["items"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def mark_children_ready(kube: KubeControlPlane, ns: str, name: str) -> None:
    """Play Strimzi's topic operator, the kubelet and spark-operator: pipeline ``name``'s topics
    Ready, its ingestion pods Ready (the real ReplicaSet and Deployment controllers do the rest),
    its SparkApplication RUNNING."""
    ready = {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]}
    patch_status(kube, f"kafkatopic/{name}-trades", ns, ready)
    patch_status(kube, f"kafkatopic/{name}-trades-dlq", ns, ready)
    # (driverInfo: required by spark-operator's status schema)
    # Deployment availability through the real controllers: no kubelet runs the pod, so the test
    # plays the kubelet and reports it Ready; ReplicaSet and Deployment controllers do the rest
    pods = eventually(lambda: items(kube, "Pod", ns, f"app.kubernetes.io/instance={name}"), "ingestion pod created")
    for pod in pods:
        patch_status(
            kube,
            f"pod/{pod['metadata']['name']}",
            ns,
            {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]},
        )
    patch_status(
        kube, f"sparkapplication/{name}-candles", ns, {"applicationState": {"state": "RUNNING"}, "driverInfo": {}}
    )
