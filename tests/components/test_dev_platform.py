"""``cryptopipe dev cluster up --node --platform`` as a user runs it (as root): the platform's
dependencies run in pods on the real node, from the images built here, in a namespace that enforces
the ``restricted`` Pod Security Standard, and ``down`` still leaves the host as it was.

Checked for real, nothing mocked or written by the test: every pod in the namespace was admitted
and runs; a privileged pod is refused there; a pod resolves cluster names through CoreDNS; the
Kafka broker (a StatefulSet) takes a topic that the KafkaTopic stand-in (on the host) makes from a
``KafkaTopic``, which goes Ready; the S3 server (a Deployment over an emptyDir) holds the lake
bucket and serves an object written from the host.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.commands.cluster_e2e import platform_pipeline
from cryptopipe_dev.commands.dev_cluster import pid_runs
from cryptopipe_dev.stack import node_addons
from tests.components.test_dev_node import _cli, _diff, _kubectl, _require_node, _tail, host_snapshot

pytestmark = pytest.mark.node

NS = node_addons.PLATFORM_NAMESPACE
RESTRICTED = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
RESOLVE = "import socket, sys\nfor name in sys.argv[1:]:\n    print(name, socket.gethostbyname(name))\n"


def _pod(name: str, image: str, command: list[str], *, restricted: bool = True) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": "Never", "command": command}
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "terminationGracePeriodSeconds": 1}
    if restricted:
        spec["securityContext"] = RESTRICTED
        container["securityContext"] = CONTAINER_RESTRICTED
    else:
        container["securityContext"] = {"privileged": True}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS}, "spec": spec}


RECORDING = "exchange_2026-07-07_BTC-ETH_matches-heartbeats.jsonl"  # in DERIVED_RECORDINGS


def _pipeline(urls: dict[str, str], platform: dict[str, str]) -> dict[str, Any]:
    return platform_pipeline(
        "btc-eth", NS, urls, platform, feed="exchange", products=["BTC-USD", "ETH-USD"], small=False
    )


def _conditions(kubeconfig: str) -> dict[str, str]:
    got = _kubectl(kubeconfig, "-n", NS, "get", "cryptopipeline", "btc-eth", "-o", "json")
    if got.returncode != 0:
        return {}
    return {c["type"]: c["status"] for c in json.loads(got.stdout).get("status", {}).get("conditions") or []}


def _user_path(kubeconfig: str, work_dir: Path, platform: dict[str, str]) -> dict[str, float]:
    """The replay server in a pod, then ``kubectl apply`` of a CryptoPipeline pointing at it: the
    operator in its pod makes the children, the stand-in makes the topics, kubelet runs the
    ingestion, which streams the recording's trades into Kafka. Status comes from the children's
    real status (nothing here writes any)."""
    from kafka import KafkaConsumer, TopicPartition

    from cryptopipe_dev.stack.kube import KubeControlPlane
    from tests.support.paths import DERIVED_RECORDINGS

    kube = KubeControlPlane(Path(kubeconfig).parent, crds=[], die_with_parent=False)
    urls = node_addons.deploy_replay(kube, [DERIVED_RECORDINGS / RECORDING], speed="max")
    applied = time.monotonic()
    created = _kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(_pipeline(urls, platform)))
    assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + 240
    conditions: dict[str, str] = {}
    while time.monotonic() < deadline:
        conditions = _conditions(kubeconfig)
        if conditions.get("TopicReady") == "True" and conditions.get("IngestionReady") == "True":
            break
        time.sleep(1)
    assert conditions.get("TopicReady") == "True" and conditions.get("IngestionReady") == "True", (
        conditions,
        _kubectl(kubeconfig, "-n", NS, "get", "pods,deploy,kafkatopics", "-o", "wide").stdout,
    )
    ready_s = time.monotonic() - applied
    topic = _kubectl(
        kubeconfig, "-n", NS, "get", "kafkatopic", "btc-eth-trades", "-o", "jsonpath={.status.topicName}"
    ).stdout
    consumer = KafkaConsumer(bootstrap_servers=platform["kafka_bootstrap_from_host"])
    try:
        trades = 0
        while time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic) or set()
            trades = sum(consumer.end_offsets([TopicPartition(topic, p) for p in partitions]).values())
            if trades > 0:
                break
            time.sleep(1)
    finally:
        consumer.close()
    assert trades > 0, _kubectl(kubeconfig, "-n", NS, "logs", "deploy/btc-eth-ingestion").stdout[-3000:]
    return {
        "apply_to_children_ready_s": round(ready_s, 1),
        "apply_to_trades_in_kafka_s": round(time.monotonic() - applied, 1),
    }


def test_up_node_platform_dependencies_in_restricted_namespace(tmp_path: Path) -> None:
    _require_node()
    work_dir = tmp_path / "dev"
    before = host_snapshot(work_dir)
    began = time.monotonic()
    pids: dict[str, int] = {}
    try:
        # in the try: a timeout or an interrupt while `up` runs must still end in `down`
        up = _cli("up", "--node", "--platform", "--work-dir", str(work_dir), timeout=1800)
        up_seconds = time.monotonic() - began
        assert up.returncode == 0, up.stdout + up.stderr
        state = json.loads((work_dir / "state.json").read_text())
        pids = {p["name"]: p["pid"] for p in state["processes"]}
        assert "topic-controller" in pids and all(pid_runs(pid) for pid in pids.values()), pids
        kubeconfig = state["kubeconfig"]
        platform = state["node"]["platform"]

        ns = json.loads(_kubectl(kubeconfig, "get", "namespace", NS, "-o", "json").stdout)
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
        # the apiserver enforces it: a privileged pod is refused there
        refused = _kubectl(
            kubeconfig, "create", "-f", "-", input=json.dumps(_pod("priv", "x:1", ["true"], restricted=False))
        )
        assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr

        # every pod there was admitted and runs: Kafka (StatefulSet) and S3 (Deployment)
        pods = json.loads(_kubectl(kubeconfig, "-n", NS, "get", "pods", "-o", "json").stdout)["items"]
        phases = {p["metadata"]["name"]: p["status"]["phase"] for p in pods}
        assert len(phases) == 2 and set(phases.values()) == {"Running"}, phases
        # the operator runs in a pod, installed by its chart with the image built here
        operator = json.loads(
            _kubectl(
                kubeconfig,
                "-n",
                node_addons.OPERATOR_NAMESPACE,
                "get",
                "deploy",
                node_addons.OPERATOR_RELEASE,
                "-o",
                "json",
            ).stdout
        )
        assert operator["status"].get("availableReplicas") == 1, operator["status"]
        assert operator["spec"]["template"]["spec"]["containers"][0]["image"] == node_addons.image_refs()["operator"]
        assert any(n.startswith("cryptopipe-kafka-") for n in phases), phases

        # a pod resolves cluster names through CoreDNS (its nameserver is kube-dns 10.96.0.10)
        refs = node_addons.image_refs()
        resolver = _pod(
            "resolve",
            refs["kafka"],
            [
                "python3",
                "-c",
                RESOLVE,
                "kubernetes.default.svc.cluster.local",
                f"{node_addons.KAFKA_CLUSTER}-kafka-bootstrap",
                f"{node_addons.S3_SERVICE}.{NS}.svc",
            ],
        )
        created = _kubectl(kubeconfig, "create", "-f", "-", input=json.dumps(resolver))
        assert created.returncode == 0, created.stderr
        done = _kubectl(
            kubeconfig, "-n", NS, "wait", "pod/resolve", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=60s"
        )
        logs = _kubectl(kubeconfig, "-n", NS, "logs", "resolve").stdout
        assert done.returncode == 0, (done.stderr, logs)
        resolved = dict(line.split() for line in logs.splitlines())
        assert resolved["kubernetes.default.svc.cluster.local"] == "10.96.0.1", resolved
        assert (
            resolved[f"{node_addons.KAFKA_CLUSTER}-kafka-bootstrap"]
            == platform["kafka_bootstrap_from_host"].split(":")[0]
        )

        # the KafkaTopic stand-in (on the host) makes a real topic in the broker in the pod
        topic = {
            "apiVersion": "kafka.strimzi.io/v1",
            "kind": "KafkaTopic",
            "metadata": {"name": "probe", "namespace": NS, "labels": {"strimzi.io/cluster": node_addons.KAFKA_CLUSTER}},
            "spec": {"partitions": 2, "replicas": 1},
        }
        assert _kubectl(kubeconfig, "apply", "-f", "-", input=json.dumps(topic)).returncode == 0
        ready = _kubectl(kubeconfig, "-n", NS, "wait", "kafkatopic/probe", "--for=condition=Ready", "--timeout=90s")
        assert ready.returncode == 0, (ready.stderr, _tail(work_dir / "topic-controller.log"))
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=platform["kafka_bootstrap_from_host"], request_timeout_ms=20000)
        try:
            described = admin.describe_topics(["probe"])
        finally:
            admin.close()
        assert len(described[0]["partitions"]) == 2, described

        # the S3 server holds the lake bucket and serves what is written to it
        from cryptopipe_dev.stack.s3server import boto3_client

        s3 = boto3_client(node_addons.s3_connection(platform["s3_endpoint_from_host"]))
        s3.put_object(Bucket=platform["lake_bucket"], Key="probe/hello.txt", Body=b"hello")
        got = s3.get_object(Bucket=platform["lake_bucket"], Key="probe/hello.txt")["Body"].read()
        assert got == b"hello"
        timings = _user_path(kubeconfig, work_dir, platform)
        print(f"\nup --node --platform {up_seconds:.1f} s; {state['node']}; user's path: {timings}")
    finally:
        down = _cli("down", "--work-dir", str(work_dir), timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    left = {name: pid for name, pid in pids.items() if pid_runs(pid)}
    assert not left, left
    after = host_snapshot(work_dir)
    assert _diff(before, after) == {}, down.stdout
