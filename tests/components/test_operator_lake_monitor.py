"""spec.monitor against the real control plane: the operator creates the lake monitor Deployment
when asked, reports LakeMonitorReady from it (outside Ready), and deletes it when the spec turns it
off, but never a Deployment of that name it does not own. The operator runs as its own process
(tests/support/operator_process.py); no part of the API server is mocked."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import conditions, events, get, items, patch_status
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube

MONITOR_SELECTOR = "app.kubernetes.io/instance={name},app.kubernetes.io/component=lake-monitor"


def _pipeline(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    obj = get(kube, "CryptoPipeline", ns, name)
    assert obj is not None
    return obj


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _env(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def _monitor_pods_ready(kube: KubeControlPlane, ns: str, name: str) -> None:
    # no kubelet runs the pod: the test plays it; ReplicaSet and Deployment controllers do the rest
    selector = MONITOR_SELECTOR.format(name=name)
    pods = eventually(lambda: items(kube, "Pod", ns, selector), "lake monitor pod created")
    for pod in pods:
        patch_status(
            kube,
            f"pod/{pod['metadata']['name']}",
            ns,
            {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]},
        )


def test_monitor_created_reported_and_deleted_when_turned_off(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "watched"
    sink = {
        "bucket": "lake",
        "prefix": "team/watched",
        "credentialsSecretRef": {"name": "lake-s3", "accessKeyKey": "id"},
    }
    body = pipeline(
        name, ns, products=["BTC-USD", "SOL-USD"], sink=sink, monitor={"enabled": True, "staleAfter": "10m"}
    )
    kube.kubectl("create", "-f", "-", input=json.dumps(body))
    uid = _pipeline(kube, ns, name)["metadata"]["uid"]

    deployment = eventually(
        lambda: get(kube, "Deployment", ns, f"{name}-lake-monitor"), "lake monitor Deployment", operator=operator
    )
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("CryptoPipeline", name, uid, True)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "lake-monitor"
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "cryptopipe.monitor"]
    assert container["image"] == body["spec"]["ingestion"]["image"]  # the default
    env = _env(deployment)
    literal = {k: e["value"] for k, e in env.items() if "value" in e}
    assert literal == {
        "CRYPTOPIPE_MONITOR_S3_ENDPOINT": "http://minio:9000",
        "CRYPTOPIPE_MONITOR_S3_REGION": "us-east-1",
        "CRYPTOPIPE_MONITOR_BUCKET": "lake",
        "CRYPTOPIPE_MONITOR_PREFIX": "team/watched",
        "CRYPTOPIPE_MONITOR_PRODUCTS": "BTC-USD,SOL-USD",
        "CRYPTOPIPE_MONITOR_WINDOWS": "1m,5m",
        "CRYPTOPIPE_MONITOR_LOOKBACK": "2h",  # the CRD's defaults, as the API server filled them in
        "CRYPTOPIPE_MONITOR_INTERVAL": "60s",
        "CRYPTOPIPE_MONITOR_STALE_AFTER": "10m",
        "CRYPTOPIPE_MONITOR_PRICE_SIGMA": "4.0",
        "CRYPTOPIPE_MONITOR_VOLUME_FACTOR": "10.0",
        "CRYPTOPIPE_MONITOR_MIN_HISTORY": "20",
        "CRYPTOPIPE_MONITOR_HTTP_HOST": "0.0.0.0",
        "CRYPTOPIPE_MONITOR_HTTP_PORT": "8080",
        # the ingestion's counted-unfillable ranges: the dead-letter topic, read through Kafka
        "CRYPTOPIPE_MONITOR_KAFKA_BOOTSTRAP": "lake-kafka-kafka-bootstrap:9092",
        "CRYPTOPIPE_MONITOR_DLQ_TOPIC": "cryptopipe.watched.trades.dlq",
    }
    assert env["CRYPTOPIPE_MONITOR_S3_ACCESS_KEY"]["valueFrom"] == {"secretKeyRef": {"name": "lake-s3", "key": "id"}}
    assert env["CRYPTOPIPE_MONITOR_S3_SECRET_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "lake-s3", "key": "secretKey"}
    }

    def monitor_condition(status: str) -> dict[str, Any]:
        obj = _pipeline(kube, ns, name)
        found = conditions(obj)
        assert set(found) == {"Ready", "TopicReady", "IngestionReady", "SparkReady", "LakeMonitorReady"}, obj.get(
            "status"
        )
        assert found["LakeMonitorReady"]["status"] == status, found["LakeMonitorReady"]
        return found

    first = eventually(
        lambda: monitor_condition("False"), "LakeMonitorReady False before its pod is ready", operator=operator
    )
    # a Deployment not ready: its controller has not seen it yet, or its pods are not available
    not_ready = {"DeploymentRolloutPending", "DeploymentRollingOut", "DeploymentUnavailable"}
    assert first["LakeMonitorReady"]["reason"] in not_ready, first["LakeMonitorReady"]
    _monitor_pods_ready(kube, ns, name)
    ready = eventually(lambda: monitor_condition("True"), "LakeMonitorReady True", operator=operator)
    assert ready["LakeMonitorReady"]["reason"] == "DeploymentAvailable"
    # the monitor is not part of Ready: topics, ingestion and Spark are not ready here
    assert ready["Ready"]["status"] != "True" and "LakeMonitor" not in ready["Ready"]["message"]

    kube.kubectl(
        "patch",
        f"cryptopipeline/{name}",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"monitor": {"enabled": False}}}),
    )

    def turned_off() -> dict[str, Any]:
        obj = _pipeline(kube, ns, name)
        assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 2, obj.get("status")
        assert set(conditions(obj)) == {"Ready", "TopicReady", "IngestionReady", "SparkReady"}, obj["status"]
        return obj

    eventually(turned_off, "status without LakeMonitorReady", operator=operator)
    # deleted before the status was written: gone by now, its ReplicaSet and pods after it
    assert get(kube, "Deployment", ns, f"{name}-lake-monitor") is None
    assert get(kube, "Deployment", ns, f"{name}-ingestion") is not None  # only the monitor went
    assert any(
        e["reason"] == "ChildrenDeleted" and f"Deployment/{name}-lake-monitor" in e["message"]
        for e in events(kube, ns, name)
    )
    eventually(
        lambda: not items(kube, "Pod", ns, MONITOR_SELECTOR.format(name=name)),
        "monitor pods garbage-collected",
        timeout=30,
        operator=operator,
    )

    # and on again: recreated
    kube.kubectl(
        "patch",
        f"cryptopipeline/{name}",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"monitor": {"enabled": True}}}),
    )
    eventually(lambda: get(kube, "Deployment", ns, f"{name}-lake-monitor"), "lake monitor recreated", operator=operator)


def test_a_deployment_the_pipeline_does_not_own_is_left_alone(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "bystander"
    labels = {"app": "someone-elses"}
    kube.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"{name}-lake-monitor", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
                },
            },
        }
    )
    kube.kubectl("create", "-f", "-", input=json.dumps(pipeline(name, ns)))  # monitor off: the default

    def reconciled() -> bool:
        status = _pipeline(kube, ns, name).get("status") or {}
        assert status.get("observedGeneration") == 1 and status.get("checkpointGeneration") == 1, status
        return True

    # a deletion would have happened before this status was written
    eventually(reconciled, "pipeline reconciled", operator=operator)
    foreign = get(kube, "Deployment", ns, f"{name}-lake-monitor")
    assert foreign is not None and foreign["metadata"]["labels"] == labels
    assert "ChildrenDeleted" not in {e["reason"] for e in events(kube, ns, name)}
