"""The ingestion Deployment (``python -m cryptopipe.ingest``) and the Service Prometheus scrapes."""

from __future__ import annotations

from cryptopipe.pipeline import ingestion_env
from cryptopipe_operator.render_common import (
    RUN_AS_USER,
    Manifest,
    http_probe,
    metadata,
    python_service_deployment,
    selector,
)
from cryptopipe_operator.render_kafka_auth import ca_volumes, kafka_auth_env
from cryptopipe_operator.spec import Pipeline, to_pipeline_config

COMPONENT = "ingestion"
COMMAND = ["python", "-m", "cryptopipe.ingest"]
HTTP_PORT = 8080  # /metrics, /healthz, /readyz
__all__ = ["COMMAND", "COMPONENT", "HTTP_PORT", "RUN_AS_USER", "render_ingestion_deployment", "render_metrics_service"]


def deployment_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-ingestion"


def metrics_service_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-ingestion-metrics"


ENV_PREFIX = "CRYPTOPIPE_INGEST_"  # cryptopipe.ingest.settings.ENV_PREFIX


def ingestion_container_env(pipeline: Pipeline) -> list[dict[str, object]]:
    """The container's env: what the local stack passes to the process, plus the Kafka TLS/SCRAM
    settings (the password as a reference to its Secret)."""
    ingestion = pipeline.spec.ingestion
    env = ingestion_env(
        # ingestion reads no checkpoint setting: any generation renders the same env
        to_pipeline_config(pipeline, checkpoint_generation=1),
        kafka_bootstrap=pipeline.kafka_bootstrap,
        ws_url=ingestion.ws_url,
        rest_url=ingestion.rest_url,
        http_port=HTTP_PORT,
    )
    literal: list[dict[str, object]] = [{"name": name, "value": value} for name, value in env.items()]
    return literal + kafka_auth_env(pipeline, ENV_PREFIX)


def render_ingestion_deployment(pipeline: Pipeline) -> Manifest:
    ingestion = pipeline.spec.ingestion
    volumes, volume_mounts = ca_volumes(pipeline)
    return python_service_deployment(
        pipeline,
        name=deployment_name(pipeline),
        component=COMPONENT,
        image=ingestion.image,
        image_pull_policy=ingestion.image_pull_policy,
        command=COMMAND,
        env=ingestion_container_env(pipeline),
        http_port=HTTP_PORT,
        resources=ingestion.resources,
        # liveness is lenient (a reconnecting feed is alive); readiness says whether trades flow
        liveness_probe=http_probe("/healthz", period_s=10, failures=6),
        readiness_probe=http_probe("/readyz", period_s=5, failures=3),
        replicas=0 if pipeline.spec.suspend else ingestion.replicas,
        # surge first: a second producer for a few seconds only sends duplicates, which the
        # job drops; a gap would have to be backfilled over REST
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        # the producer's flush on SIGTERM (flush_timeout_s 20 s + ~5 s stop) fits in this
        termination_grace_s=30,
        volumes=volumes,
        volume_mounts=volume_mounts,
    )


def render_metrics_service(pipeline: Pipeline) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(pipeline, metrics_service_name(pipeline), COMPONENT),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(pipeline, COMPONENT),
            "ports": [{"name": "metrics", "port": HTTP_PORT, "targetPort": "metrics", "protocol": "TCP"}],
        },
    }
