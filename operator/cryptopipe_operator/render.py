"""Every child of a CryptoPipeline, in the order to apply them (RBAC before the pods that use it)."""

from __future__ import annotations

from cryptopipe_operator.render_common import Manifest
from cryptopipe_operator.render_ingestion import render_ingestion_deployment, render_metrics_service
from cryptopipe_operator.render_kafka import render_dlq_topic, render_kafka_topic
from cryptopipe_operator.render_spark import (
    render_role,
    render_role_binding,
    render_service_account,
    render_spark_application,
)
from cryptopipe_operator.spec import Pipeline

__all__ = [
    "Manifest",
    "render_children",
    "render_dlq_topic",
    "render_ingestion_deployment",
    "render_kafka_topic",
    "render_metrics_service",
    "render_role",
    "render_role_binding",
    "render_service_account",
    "render_spark_application",
]


def render_children(
    pipeline: Pipeline, checkpoint_generation: int, *, starting_offsets: str = "earliest"
) -> list[Manifest]:
    return [
        render_kafka_topic(pipeline),
        render_dlq_topic(pipeline),
        render_service_account(pipeline),
        render_role(pipeline),
        render_role_binding(pipeline),
        render_metrics_service(pipeline),
        render_ingestion_deployment(pipeline),
        render_spark_application(pipeline, checkpoint_generation, starting_offsets=starting_offsets),
    ]
