"""What every child of a CryptoPipeline carries: its name, labels and the owner reference back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptopipe_operator.spec import API_GROUP, API_VERSION, KIND, Pipeline, Resources

MANAGED_BY = "cryptopipe-operator"
PART_OF = "cryptopipe"

Manifest = dict[str, object]


def labels(pipeline: Pipeline, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": f"cryptopipe-{component}",
        "app.kubernetes.io/instance": pipeline.name,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def selector(pipeline: Pipeline, component: str) -> dict[str, str]:
    """The labels a Deployment or Service selects on: a subset that never changes (selectors are immutable)."""
    return {"app.kubernetes.io/instance": pipeline.name, "app.kubernetes.io/component": component}


def owner_reference(pipeline: Pipeline) -> dict[str, object]:
    # controller + blockOwnerDeletion: garbage collection removes the children with the pipeline,
    # and foreground deletion waits for them
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "name": pipeline.name,
        "uid": pipeline.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def metadata(
    pipeline: Pipeline, name: str, component: str, extra_labels: dict[str, str] | None = None
) -> dict[str, object]:
    return {
        "name": name,
        "namespace": pipeline.namespace,
        "labels": labels(pipeline, component) | (extra_labels or {}),
        "ownerReferences": [owner_reference(pipeline)],
    }


def restricted_container_security() -> dict[str, object]:
    """The Pod Security Standard "restricted" profile for one container."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# Stand-ins for the sink's credentials: an env builder is called with them, and every variable whose
# value is one becomes a secretKeyRef to the sink's Secret, so a renamed variable cannot slip a
# secret into a manifest (the same scheme as render_spark.py's).
SINK_ACCESS_KEY = "\0sink-access-key"
SINK_SECRET_KEY = "\0sink-secret-key"


def env_with_sink_secret_refs(pipeline: Pipeline, env: dict[str, str]) -> list[dict[str, object]]:
    """A container's env list: the stand-in values as references to the sink's Secret, the rest literal."""
    ref = pipeline.spec.sink.credentials_secret_ref
    secret_keys = {SINK_ACCESS_KEY: ref.access_key_key, SINK_SECRET_KEY: ref.secret_key_key}
    return [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": secret_keys[value]}}}
        if value in secret_keys
        else {"name": name, "value": value}
        for name, value in env.items()
    ]


# any non-root id: the images need no particular user, and a numeric id lets runAsNonRoot be verified
RUN_AS_USER = 10001
SERVICE_PORT_NAME = "metrics"  # /metrics, /healthz, /readyz; the PodMonitor scrapes this port name


def http_probe(path: str, *, period_s: int, failures: int) -> dict[str, object]:
    return {
        "httpGet": {"path": path, "port": SERVICE_PORT_NAME},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def python_service_deployment(
    pipeline: Pipeline,
    *,
    name: str,
    component: str,
    image: str,
    image_pull_policy: str,
    command: list[str],
    env: Sequence[Mapping[str, object]],
    http_port: int,
    resources: Resources,
    liveness_probe: dict[str, object],
    readiness_probe: dict[str, object],
    replicas: int,
    termination_grace_s: int,
    strategy: dict[str, object] | None = None,
    volumes: Sequence[Mapping[str, object]] = (),
    volume_mounts: Sequence[Mapping[str, object]] = (),
) -> Manifest:
    """A Deployment of one of the pipeline's Python services (ingestion, lake monitor): one
    container named after the component serving /metrics and its probes on the "metrics" port,
    non-root, read-only root filesystem with an emptyDir /tmp, no API token."""
    container = {
        "name": component,
        "image": image,
        "imagePullPolicy": image_pull_policy,
        "command": command,
        "env": env,
        "ports": [{"name": SERVICE_PORT_NAME, "containerPort": http_port, "protocol": "TCP"}],
        "livenessProbe": liveness_probe,
        "readinessProbe": readiness_probe,
        "resources": {"requests": resources.requests.as_dict(), "limits": resources.limits.as_dict()},
        "securityContext": restricted_container_security() | {"readOnlyRootFilesystem": True},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *volume_mounts],
    }
    spec: dict[str, object] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector(pipeline, component)},
    }
    if strategy is not None:
        spec["strategy"] = strategy
    spec["template"] = {
        "metadata": {"labels": labels(pipeline, component)},
        "spec": {
            "automountServiceAccountToken": False,  # these services never talk to the API server
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS_USER,
                "runAsGroup": RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "terminationGracePeriodSeconds": termination_grace_s,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *volumes],
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(pipeline, name, component),
        "spec": spec,
    }
