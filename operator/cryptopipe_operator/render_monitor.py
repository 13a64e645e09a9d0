"""The lake monitor Deployment (``python -m cryptopipe.monitor``), rendered only when
``spec.monitor.enabled``: it scans the pipeline's lake every interval and serves /metrics."""

from __future__ import annotations

from cryptopipe.lake.s3 import S3Connection
from cryptopipe.pipeline import monitor_env
from cryptopipe_operator.render_common import (
    SINK_ACCESS_KEY,
    SINK_SECRET_KEY,
    Manifest,
    env_with_sink_secret_refs,
    http_probe,
    python_service_deployment,
)
from cryptopipe_operator.render_kafka_auth import ca_volumes, kafka_auth_env
from cryptopipe_operator.spec import Pipeline, to_pipeline_config

COMPONENT = "lake-monitor"
COMMAND = ["python", "-m", "cryptopipe.monitor"]
ENV_PREFIX = "CRYPTOPIPE_MONITOR_"  # cryptopipe.monitor.settings.ENV_PREFIX
HTTP_PORT = 8080  # /metrics, /healthz, /readyz (ready after the first successful scan)


def deployment_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-lake-monitor"


def monitor_image(pipeline: Pipeline) -> str:
    # the ingestion image holds the cryptopipe package, the monitor included
    return pipeline.spec.monitor.image or pipeline.spec.ingestion.image


def monitor_container_env(pipeline: Pipeline) -> list[dict[str, object]]:
    """monitor_env()'s variables for this spec, the credentials as references to the sink's Secret."""
    sink, monitor = pipeline.spec.sink, pipeline.spec.monitor
    env = monitor_env(
        # the monitor reads no checkpoint setting: any generation renders the same env
        to_pipeline_config(pipeline, checkpoint_generation=1),
        S3Connection(sink.endpoint, SINK_ACCESS_KEY, SINK_SECRET_KEY, sink.region),
        interval=monitor.interval,
        lookback=monitor.lookback,
        stale_after=monitor.stale_after,
        price_sigma=monitor.price_sigma,
        volume_factor=monitor.volume_factor,
        min_history=monitor.min_history,
        http_host="0.0.0.0",
        http_port=HTTP_PORT,
        # the ingestion's counted-unfillable trade ids are in its dead-letter topic (issue 10)
        kafka_bootstrap=pipeline.kafka_bootstrap,
    )
    return env_with_sink_secret_refs(pipeline, env) + kafka_auth_env(pipeline, ENV_PREFIX)


def render_monitor_deployment(pipeline: Pipeline) -> Manifest:
    monitor = pipeline.spec.monitor
    volumes, volume_mounts = ca_volumes(pipeline)
    return python_service_deployment(
        pipeline,
        name=deployment_name(pipeline),
        component=COMPONENT,
        image=monitor_image(pipeline),
        image_pull_policy=monitor.image_pull_policy,
        command=COMMAND,
        env=monitor_container_env(pipeline),
        http_port=HTTP_PORT,
        resources=monitor.resources,
        # liveness: the HTTP server answers (a slow or failing scan is reported, not restarted);
        # readiness: a scan has succeeded, so /metrics describes the lake
        liveness_probe=http_probe("/healthz", period_s=10, failures=6),
        readiness_probe=http_probe("/readyz", period_s=10, failures=3),
        # one scanner is enough; suspend stops it with the pipeline (a paused lake is stale by design)
        replicas=0 if pipeline.spec.suspend else 1,
        termination_grace_s=15,
        volumes=volumes,
        volume_mounts=volume_mounts,
    )
