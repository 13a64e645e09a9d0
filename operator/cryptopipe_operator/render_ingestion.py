"""The ingestion Deployment (``python -m cryptopipe.ingest``) and the Service Prometheus scrapes."""

from __future__ import annotations

from cryptopipe.pipeline import ingestion_env
from cryptopipe_operator.render_common import Manifest, labels, metadata, restricted_container_security, selector
from cryptopipe_operator.spec import Pipeline, to_pipeline_config

COMPONENT = "ingestion"
COMMAND = ["python", "-m", "cryptopipe.ingest"]
HTTP_PORT = 8080  # /metrics, /healthz, /readyz
# any non-root id: the image needs no particular user, and a numeric id lets runAsNonRoot be verified
RUN_AS_USER = 10001


def deployment_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-ingestion"


def metrics_service_name(pipeline: Pipeline) -> str:
    return f"{pipeline.name}-ingestion-metrics"


def ingestion_container_env(pipeline: Pipeline) -> list[dict[str, str]]:
    """The container's env: exactly what the local stack passes to the process (no secrets needed)."""
    ingestion = pipeline.spec.ingestion
    env = ingestion_env(
        # ingestion reads no checkpoint setting: any generation renders the same env
        to_pipeline_config(pipeline, checkpoint_generation=1),
        kafka_bootstrap=pipeline.kafka_bootstrap,
        ws_url=ingestion.ws_url,
        rest_url=ingestion.rest_url,
        http_port=HTTP_PORT,
    )
    return [{"name": name, "value": value} for name, value in env.items()]


def _probe(path: str, period_s: int, failures: int) -> dict[str, object]:
    return {
        "httpGet": {"path": path, "port": "metrics"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def render_ingestion_deployment(pipeline: Pipeline) -> Manifest:
    ingestion = pipeline.spec.ingestion
    container = {
        "name": COMPONENT,
        "image": ingestion.image,
        "imagePullPolicy": ingestion.image_pull_policy,
        "command": COMMAND,
        "env": ingestion_container_env(pipeline),
        "ports": [{"name": "metrics", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # liveness is lenient (a reconnecting feed is alive); readiness says whether trades flow
        "livenessProbe": _probe("/healthz", period_s=10, failures=6),
        "readinessProbe": _probe("/readyz", period_s=5, failures=3),
        "resources": {
            "requests": ingestion.resources.requests.as_dict(),
            "limits": ingestion.resources.limits.as_dict(),
        },
        "securityContext": restricted_container_security() | {"readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(pipeline, deployment_name(pipeline), COMPONENT),
        "spec": {
            "replicas": 0 if pipeline.spec.suspend else ingestion.replicas,
            "selector": {"matchLabels": selector(pipeline, COMPONENT)},
            # surge first: a second producer for a few seconds only sends duplicates, which the
            # job drops; a gap would have to be backfilled over REST
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels(pipeline, COMPONENT)},
                "spec": {
                    "automountServiceAccountToken": False,  # it never talks to the API server
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_USER,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    # the producer's flush on SIGTERM (flush_timeout_s 20 s + ~5 s stop) fits in this
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


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
