"""The dev stand-in for Strimzi's topic operator (services/cryptopipe_dev/topic_controller) against
the real kube-apiserver (with Strimzi's own KafkaTopic CRD) and a real Kafka broker: KafkaTopics
as the operator renders them become real topics, spec changes reach Kafka (or are refused the way
Strimzi refuses them), deletion follows the finalizer and ``strimzi.io/managed``; and end to end,
the operator's TopicReady goes True from topics the stand-in really made. Nothing here writes a
KafkaTopic's status but the stand-in."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from cryptopipe_dev.stack.kafka import KafkaBroker
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.procs import LOOPBACK, free_port
from cryptopipe_dev.stack.topic_controller import topic_controller_process
from cryptopipe_dev.topic_controller import FINALIZER, TopicController
from cryptopipe_dev.topic_controller.kube_api import KubeApi, load_kubeconfig
from cryptopipe_operator.render_kafka import render_dlq_topic, render_kafka_topic
from cryptopipe_operator.spec import parse_pipeline
from tests.support.cryptopipelines import BASE_SPEC, pipeline
from tests.support.kube_objects import conditions, get
from tests.support.operator_process import OperatorProcess, eventually, run_operator

pytestmark = [pytest.mark.kube, pytest.mark.components]

CLUSTER = BASE_SPEC["kafka"]["clusterName"]
TIMEOUT = 60.0  # generous: a 2-core machine shared with other suites; nothing here is timed


@pytest.fixture
def admin(kafka: KafkaBroker) -> Iterator[KafkaAdminClient]:
    client = kafka.admin()
    yield client
    client.close()


@pytest.fixture
def controller(kube: KubeControlPlane, kafka: KafkaBroker, kube_namespace: str) -> Iterator[TopicController]:
    """The stand-in in this process, watching only the test's namespace, resyncing every second."""
    api = KubeApi(load_kubeconfig(kube.kubeconfig_path))
    running = TopicController(kafka.bootstrap, kube=api, namespaces=[kube_namespace], cluster=CLUSTER, interval=1)
    running.start()
    yield running
    # KafkaTopics carry the stand-in's finalizer: delete them while it still runs, so the namespace can go
    kube.kubectl("delete", "kafkatopics", "--all", "-n", kube_namespace, "--wait=true", "--timeout=60s", check=False)
    running.stop()


def operator_topic(namespace: str, name: str, *, dlq: bool = False, **kafka_spec: Any) -> dict[str, Any]:
    """A KafkaTopic exactly as the operator renders it for a pipeline ``name`` (without the owner
    reference: no CryptoPipeline exists here, and the garbage collector would delete an orphan)."""
    spec = copy.deepcopy(BASE_SPEC)
    spec["kafka"].update(kafka_spec)
    body = {"metadata": {"name": name, "namespace": namespace, "uid": "00000000-0000-0000-0000-000000000000"}}
    parsed = parse_pipeline({**body, "spec": spec})
    topic = (render_dlq_topic if dlq else render_kafka_topic)(parsed)
    topic["metadata"].pop("ownerReferences", None)  # type: ignore[union-attr]
    return topic


def kafka_topic(admin: KafkaAdminClient, name: str) -> dict[str, Any] | None:
    found = admin.describe_topics([name])[0]
    if found["error_code"]:
        return None
    configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])["topic"][name]
    return {
        "partitions": len(found["partitions"]),
        "replicas": {len(p["replica_nodes"]) for p in found["partitions"]},
        "topic_id": str(found["topic_id"]),
        "config": {k: v["value"] for k, v in configs.items() if v["config_source"] == "DYNAMIC_TOPIC_CONFIG"},
    }


def kafka_topics(kube: KubeControlPlane, namespace: str, name: str) -> dict[str, Any] | None:
    return get(kube, "KafkaTopic", namespace, name)


def ready(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """The Ready condition once the stand-in has seen this generation."""
    if obj is None or (obj.get("status") or {}).get("observedGeneration") != obj["metadata"]["generation"]:
        return None
    return conditions(obj).get("Ready")


def patch_spec(kube: KubeControlPlane, namespace: str, name: str, spec: dict[str, Any]) -> None:
    kube.kubectl("patch", "kafkatopic", name, "-n", namespace, "--type=merge", "-p", json.dumps({"spec": spec}))


def test_a_kafka_topic_as_the_operator_renders_it_becomes_a_real_topic_and_follows_its_spec(
    kube: KubeControlPlane, kube_namespace: str, controller: TopicController, admin: KafkaAdminClient
) -> None:
    ns = kube_namespace
    topic = operator_topic(ns, "tc-life", partitions=3, retentionMs=3_600_000, minInsyncReplicas=1)
    name, kafka_name = topic["metadata"]["name"], topic["spec"]["topicName"]  # type: ignore[index]
    assert kafka_name != name and "." in kafka_name  # spec.topicName is what counts in Kafka
    kube.apply(topic)

    obj = eventually(lambda: (o := kafka_topics(kube, ns, name)) and ready(o) and o, "KafkaTopic Ready", TIMEOUT)
    assert conditions(obj)["Ready"]["status"] == "True", obj["status"]
    assert FINALIZER in obj["metadata"]["finalizers"]
    real = kafka_topic(admin, kafka_name)
    assert real is not None
    assert real["partitions"] == 3 and real["replicas"] == {1}
    assert real["config"] == {"retention.ms": "3600000", "cleanup.policy": "delete", "min.insync.replicas": "1"}
    assert obj["status"]["topicName"] == kafka_name
    assert obj["status"]["topicId"] == real["topic_id"]
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"] == 1
    assert "T" in conditions(obj)["Ready"]["lastTransitionTime"]

    # more partitions: Kafka grows the topic
    patch_spec(kube, ns, name, {"partitions": 5})
    obj = eventually(lambda: ready(kafka_topics(kube, ns, name)) and kafka_topics(kube, ns, name), "gen 2", TIMEOUT)
    assert conditions(obj)["Ready"]["status"] == "True", obj["status"]
    assert kafka_topic(admin, kafka_name)["partitions"] == 5  # type: ignore[index]

    # fewer partitions: refused as Strimzi refuses it, the topic untouched
    patch_spec(kube, ns, name, {"partitions": 2})
    obj = eventually(lambda: ready(kafka_topics(kube, ns, name)) and kafka_topics(kube, ns, name), "gen 3", TIMEOUT)
    refused = conditions(obj)["Ready"]
    assert (refused["status"], refused["reason"]) == ("False", "NotSupported"), refused
    assert "Decreasing partitions" in refused["message"]
    assert kafka_topic(admin, kafka_name)["partitions"] == 5  # type: ignore[index]

    # back to a valid spec with a new retention: the config is altered and the topic Ready again
    patch_spec(kube, ns, name, {"partitions": 5, "config": {"retention.ms": 7_200_000}})
    obj = eventually(lambda: ready(kafka_topics(kube, ns, name)) and kafka_topics(kube, ns, name), "gen 4", TIMEOUT)
    assert conditions(obj)["Ready"]["status"] == "True", obj["status"]
    assert kafka_topic(admin, kafka_name)["config"]["retention.ms"] == "7200000"  # type: ignore[index]

    # deleting the KafkaTopic deletes the topic, then the finalizer goes and so does the resource
    kube.kubectl("delete", "kafkatopic", name, "-n", ns, "--wait=false")
    eventually(lambda: kafka_topics(kube, ns, name) is None, "KafkaTopic gone", TIMEOUT)
    assert kafka_topic(admin, kafka_name) is None


def test_an_unmanaged_kafka_topic_leaves_its_topic_behind(
    kube: KubeControlPlane, kube_namespace: str, controller: TopicController, admin: KafkaAdminClient
) -> None:
    """What the operator's deletionPolicy Retain relies on: ``strimzi.io/managed: "false"``."""
    ns = kube_namespace
    topic = operator_topic(ns, "tc-retain", dlq=True)
    name, kafka_name = topic["metadata"]["name"], topic["spec"]["topicName"]  # type: ignore[index]
    kube.apply(topic)
    eventually(lambda: (r := ready(kafka_topics(kube, ns, name))) and r["status"] == "True", "Ready", TIMEOUT)
    topic_id = kafka_topic(admin, kafka_name)["topic_id"]  # type: ignore[index]

    kube.kubectl("annotate", "kafkatopic", name, "-n", ns, "strimzi.io/managed=false")
    kube.kubectl("delete", "kafkatopic", name, "-n", ns, "--wait=false")
    eventually(lambda: kafka_topics(kube, ns, name) is None, "KafkaTopic gone", TIMEOUT)
    kept = kafka_topic(admin, kafka_name)
    assert kept is not None and kept["topic_id"] == topic_id, kept


def test_replicas_are_capped_at_the_broker_count_and_a_second_claim_on_a_topic_is_a_conflict(
    kube: KubeControlPlane, kube_namespace: str, controller: TopicController, admin: KafkaAdminClient
) -> None:
    ns = kube_namespace
    first = operator_topic(ns, "tc-claim", replicas=3)  # three copies asked of a one-broker Kafka
    kube.apply(first)
    obj = eventually(lambda: (o := kafka_topics(kube, ns, "tc-claim-trades")) and ready(o) and o, "Ready", TIMEOUT)
    assert conditions(obj)["Ready"]["status"] == "True", obj["status"]
    kafka_name = first["spec"]["topicName"]  # type: ignore[index]
    assert kafka_topic(admin, kafka_name)["replicas"] == {1}  # type: ignore[index]

    second = copy.deepcopy(first)
    second["metadata"]["name"] = "tc-claim-trades-again"  # type: ignore[index]
    # created within the same second the claims tie on creationTimestamp and the name decides (as in
    # Strimzi): this name sorts after the first one's, so the first claim stays the owner either way
    kube.apply(second)
    conflict = eventually(lambda: ready(kafka_topics(kube, ns, "tc-claim-trades-again")), "conflict reported", TIMEOUT)
    assert (conflict["status"], conflict["reason"]) == ("False", "ResourceConflict"), conflict
    assert f"name='{first['metadata']['name']}'" in conflict["message"]  # type: ignore[index]

    # the loser going away does not take the winner's topic with it
    kube.kubectl("delete", "kafkatopic", "tc-claim-trades-again", "-n", ns, "--wait=false")
    eventually(lambda: kafka_topics(kube, ns, "tc-claim-trades-again") is None, "second KafkaTopic gone", TIMEOUT)
    assert kafka_topic(admin, kafka_name) is not None


def test_changes_made_behind_its_back_in_kafka_are_undone(
    kube: KubeControlPlane, kube_namespace: str, controller: TopicController, admin: KafkaAdminClient
) -> None:
    """The KafkaTopic is the source of truth (Strimzi's unidirectional mode): a config altered with
    Kafka's own tools is set back, a topic deleted under it is made again (with a new topicId)."""
    ns = kube_namespace
    topic = operator_topic(ns, "tc-drift", retentionMs=3_600_000)
    name, kafka_name = topic["metadata"]["name"], topic["spec"]["topicName"]  # type: ignore[index]
    kube.apply(topic)
    eventually(lambda: (r := ready(kafka_topics(kube, ns, name))) and r["status"] == "True", "Ready", TIMEOUT)
    first_id = kafka_topic(admin, kafka_name)["topic_id"]  # type: ignore[index]

    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, kafka_name, {"retention.ms": "1000"})])
    assert kafka_topic(admin, kafka_name)["config"]["retention.ms"] == "1000"  # type: ignore[index]
    eventually(
        lambda: kafka_topic(admin, kafka_name)["config"]["retention.ms"] == "3600000",  # type: ignore[index]
        "retention.ms set back",
        TIMEOUT,
    )

    admin.delete_topics([kafka_name])
    again = eventually(
        lambda: (t := kafka_topic(admin, kafka_name)) and t["topic_id"] != first_id and t, "topic made again", TIMEOUT
    )
    eventually(
        lambda: (kafka_topics(kube, ns, name) or {}).get("status", {}).get("topicId") == again["topic_id"],
        "status.topicId follows the new topic",
        TIMEOUT,
    )


def test_an_unreachable_kafka_is_reported_not_hidden(kube: KubeControlPlane, kube_namespace: str) -> None:
    """No broker at the bootstrap address: the KafkaTopic says so (Ready False, KafkaError), which
    the operator (status.topic_verdict) reports as TopicReady False."""
    api = KubeApi(load_kubeconfig(kube.kubeconfig_path))
    nobody = f"{LOOPBACK}:{free_port()}"
    stand_in = TopicController(nobody, kube=api, namespaces=[kube_namespace], interval=1, admin_timeout_ms=2000)
    stand_in.start()
    try:
        kube.apply(operator_topic(kube_namespace, "tc-nokafka"))
        failed = eventually(lambda: ready(kafka_topics(kube, kube_namespace, "tc-nokafka-trades")), "status", TIMEOUT)
        assert (failed["status"], failed["reason"]) == ("False", "KafkaError"), failed
        assert nobody in failed["message"] or "bootstrap" in failed["message"].lower(), failed
    finally:
        stand_in.stop()
    # its finalizer would hold the namespace's deletion until Kafka answers: take it off, as
    # Strimzi's docs say to when the topic operator is gone
    kube.kubectl(
        "patch", "kafkatopic", "tc-nokafka-trades", "-n", kube_namespace, "--type=merge",
        "-p", json.dumps({"metadata": {"finalizers": None}}),
    )  # fmt: skip


@pytest.fixture
def operator(kube: KubeControlPlane, tmp_path: Path) -> Iterator[OperatorProcess]:
    yield from run_operator(kube, tmp_path / "operator.log")


def test_the_operators_topic_condition_goes_true_from_topics_the_stand_in_really_made(
    kube: KubeControlPlane,
    kafka: KafkaBroker,
    kube_namespace: str,
    operator: OperatorProcess,
    admin: KafkaAdminClient,
    tmp_path: Path,
) -> None:
    """The operator (its own process) writes the pipeline's KafkaTopics, the stand-in (its own
    process, ``python -m cryptopipe_dev.topic_controller``) makes them real topics, and the
    pipeline's TopicReady follows from their status. Deployment and SparkApplication stay unready:
    no node runs here, and nothing is marked ready by the test."""
    ns = kube_namespace
    stand_in = topic_controller_process(
        kafka.bootstrap,
        log_path=tmp_path / "topic-controller.log",
        env=kube.env(),
        namespaces=[ns],
        cluster=CLUSTER,
        interval=1,
        die_with_parent=True,
    ).start()
    try:
        name = "tc-e2e"
        kube.kubectl("create", "-f", "-", input=json.dumps(pipeline(name, ns)))

        def topic_ready() -> dict[str, Any] | None:
            assert stand_in.alive, stand_in.log_tail()
            obj = get(kube, "CryptoPipeline", ns, name)
            found = conditions(obj or {}).get("TopicReady")
            assert found is not None and found["status"] == "True", found
            return obj

        obj = eventually(topic_ready, "the pipeline's TopicReady", TIMEOUT, operator)
        for topic_resource in (f"{name}-trades", f"{name}-trades-dlq", f"{name}-ingest-state"):
            kt = get(kube, "KafkaTopic", ns, topic_resource)
            assert kt is not None and conditions(kt)["Ready"]["status"] == "True", kt
            real = kafka_topic(admin, kt["spec"]["topicName"])
            assert real is not None and real["topic_id"] == kt["status"]["topicId"], (real, kt["status"])
            assert real["partitions"] == kt["spec"]["partitions"]
        assert conditions(obj)["Ready"]["status"] != "True"  # ingestion and Spark have no node to run on
        assert "dev stand-in for Strimzi's topic operator" in stand_in.log_tail(200)

        # deletionPolicy Retain (the default): the operator hands the KafkaTopics over as unmanaged,
        # and deleting them then leaves the real topics (and their trades) in Kafka
        kube.kubectl("delete", "cryptopipeline", name, "-n", ns, "--wait=false")
        eventually(lambda: get(kube, "CryptoPipeline", ns, name) is None, "pipeline gone", TIMEOUT, operator)
        retained = kube.get_json("kafkatopics", "-n", ns)["items"]
        assert len(retained) == 3 and all(
            kt["metadata"]["annotations"]["strimzi.io/managed"] == "false" for kt in retained
        ), retained
        kube.kubectl("delete", "kafkatopics", "--all", "-n", ns, "--wait=false")
        eventually(lambda: not kube.get_json("kafkatopics", "-n", ns)["items"], "KafkaTopics gone", TIMEOUT)
        for kt in retained:
            assert kafka_topic(admin, kt["spec"]["topicName"]) is not None, kt["spec"]["topicName"]
    finally:
        kube.kubectl("delete", "kafkatopics", "--all", "-n", ns, "--wait=true", "--timeout=60s", check=False)
        code = stand_in.stop()
    assert code == 0 and "stopped" in stand_in.log_tail(5), stand_in.log_tail()  # SIGTERM: a clean exit
