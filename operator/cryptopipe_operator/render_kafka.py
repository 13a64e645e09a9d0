"""The trades topic and its dead-letter topic, as Strimzi KafkaTopics."""

from __future__ import annotations

from cryptopipe_operator.render_common import Manifest, metadata
from cryptopipe_operator.spec import Pipeline

STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
# the DLQ sees only malformed frames: one partition keeps them in arrival order
DLQ_PARTITIONS = 1


def trades_topic_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-trades"


def dlq_topic_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-trades-dlq"


def _topic(pipeline: Pipeline, name: str, topic: str, partitions: int, retention_ms: int) -> Manifest:
    kafka = pipeline.spec.kafka
    config: dict[str, object] = {"retention.ms": retention_ms, "cleanup.policy": "delete"}
    if kafka.topic_min_insync_replicas is not None:
        # the ingestion produces with acks=all: this is how many copies "acknowledged" means
        config["min.insync.replicas"] = kafka.topic_min_insync_replicas
    spec: dict[str, object] = {
        # the resource name must be a DNS name; the Kafka topic name may hold dots and capitals
        "topicName": topic,
        "partitions": partitions,
        "config": config,
    }
    if kafka.replicas is not None:
        spec["replicas"] = kafka.replicas
    return {
        "apiVersion": STRIMZI_API_VERSION,
        "kind": "KafkaTopic",
        "metadata": metadata(pipeline, name, "topic", {"strimzi.io/cluster": kafka.cluster_name}),
        "spec": spec,
    }


def render_kafka_topic(pipeline: Pipeline) -> Manifest:
    kafka = pipeline.spec.kafka
    return _topic(pipeline, trades_topic_name(pipeline), pipeline.topic, kafka.partitions, kafka.retention_ms)


def render_dlq_topic(pipeline: Pipeline) -> Manifest:
    kafka = pipeline.spec.kafka
    return _topic(pipeline, dlq_topic_name(pipeline), pipeline.dlq_topic, DLQ_PARTITIONS, kafka.dlq_retention_ms)
