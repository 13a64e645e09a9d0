"""The trades topic, its dead-letter topic and ingestion's resume-point topic, as Strimzi KafkaTopics."""

from __future__ import annotations

from cryptopipe_operator.render_common import Manifest, metadata
from cryptopipe_operator.spec import Pipeline

STRIMZI_API_VERSION = "kafka.strimzi.io/v1"
# the DLQ sees only malformed frames: one partition keeps them in arrival order
DLQ_PARTITIONS = 1
# one small record per product, compacted: the newest resume point per product is all that counts
STATE_PARTITIONS = 1


def trades_topic_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-trades"


def dlq_topic_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-trades-dlq"


def state_topic_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-ingest-state"


def _topic(
    pipeline: Pipeline, name: str, topic: str, partitions: int, retention_ms: int, cleanup: str = "delete"
) -> Manifest:
    kafka = pipeline.spec.kafka
    config: dict[str, object] = {"cleanup.policy": cleanup}
    if cleanup == "delete":
        config["retention.ms"] = retention_ms
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


def render_state_topic(pipeline: Pipeline) -> Manifest:
    """Compacted, never deleted by age: a quiet product's point must survive any retention."""
    return _topic(pipeline, state_topic_name(pipeline), pipeline.state_topic, STATE_PARTITIONS, -1, cleanup="compact")
