"""The operator's I/O shell: what a CryptoPipeline's handlers do against the API server.

Everything decided here comes from the pure core (spec.py, render*.py, status.py); this module
only reads and writes. It talks plain HTTP through aiohttp (kopf's own HTTP library, so no second
Kubernetes client and its ~40 MB of generated models) with the credentials kopf's login functions
read from the pod's ServiceAccount or from $KUBECONFIG.

Children are written with server-side apply (field manager ``cryptopipe-operator``, ``force``):
the same request creates or updates, names are deterministic, so a reconcile repeated after a
crash converges on the same objects and never duplicates one. The one child deleted here is an
optional one the spec turned off (the lake monitor); the others go by garbage collection.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf

from cryptopipe_operator import lake_cleanup
from cryptopipe_operator.render import ChildRef, render_children, unwanted_children
from cryptopipe_operator.render_ingestion import deployment_name
from cryptopipe_operator.render_kafka import STRIMZI_API_VERSION, dlq_topic_name, trades_topic_name
from cryptopipe_operator.render_monitor import deployment_name as monitor_deployment_name
from cryptopipe_operator.render_spark import SPARK_API_VERSION, spark_application_name
from cryptopipe_operator.spec import (
    API_GROUP,
    API_VERSION,
    PLURAL,
    Pipeline,
    SpecError,
    checkpoint_status,
    next_checkpoint_generation,
    parse_pipeline,
)
from cryptopipe_operator.status import aggregate_conditions, validation_failed_status

log = logging.getLogger(__name__)

FIELD_MANAGER = "cryptopipe-operator"
# Strimzi's (unidirectional) topic operator leaves the Kafka topic alone, and does not delete it
# with the KafkaTopic, when the KafkaTopic carries this annotation.
STRIMZI_MANAGED = "strimzi.io/managed"

# The plural of every kind the operator reads or writes (no discovery round-trip needed).
PLURALS = {
    "ServiceAccount": "serviceaccounts",
    "Service": "services",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Deployment": "deployments",
    "NetworkPolicy": "networkpolicies",
    "KafkaTopic": "kafkatopics",
    "SparkApplication": "sparkapplications",
    "CryptoPipeline": PLURAL,
    "Event": "events",
    "Secret": "secrets",
}

Emit = Callable[[str, str, str], None]  # (type Normal|Warning, reason, message)


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class KubeApi:
    """The few API calls the operator makes, over one pooled aiohttp session."""

    def __init__(self, info: kopf.ConnectionInfo, *, total_timeout: float, connect_timeout: float) -> None:
        self._server = info.server.rstrip("/")
        self._headers = info.as_http_headers()
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=_ssl_context(info), limit=50),
            timeout=aiohttp.ClientTimeout(total=total_timeout, sock_connect=connect_timeout),
        )

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
        missing_ok: bool = False,
    ) -> dict[str, Any] | None:
        headers = {**self._headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        async with self._session.request(
            method, self._server + path, json=body, headers=headers, params=params
        ) as resp:
            if resp.status == 404 and missing_ok:
                return None
            if resp.status >= 400:
                raise ApiError(method, path, resp.status, await resp.text())
            return await resp.json()

    async def get(self, path: str) -> dict[str, Any] | None:
        """The object at ``path``, or None if it does not exist."""
        return await self.request("GET", path, missing_ok=True)

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply; force: the operator owns its children's fields, even ones a human
        edited with kubectl (drift is put back, not reported as a conflict)."""
        meta = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])
        params = {"fieldManager": FIELD_MANAGER, "force": "true"}
        # JSON is valid YAML: the apply content type takes it as is
        result = await self.request(
            "PATCH", path, body=manifest, content_type="application/apply-patch+yaml", params=params
        )
        assert result is not None
        return result

    async def patch_status(self, pipeline_path: str, status: Mapping[str, Any]) -> None:
        # a merge patch of the status subresource: lists (conditions) are replaced as a whole,
        # the fields not named (e.g. checkpoint fields in a status refresh) are kept
        await self.request(
            "PATCH", f"{pipeline_path}/status", body={"status": status}, content_type="application/merge-patch+json"
        )


def _ssl_context(info: kopf.ConnectionInfo) -> ssl.SSLContext:
    if info.ca_data:
        ctx = ssl.create_default_context(cadata=base64.b64decode(info.ca_data).decode())
    else:
        ctx = ssl.create_default_context(cafile=info.ca_path and str(info.ca_path))  # type: ignore[arg-type]
    if info.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = (
        _pem_file(info.certificate_path, info.certificate_data),
        _pem_file(info.private_key_path, info.private_key_data),
    )
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _pem_file(path: Any, data: str | bytes | None) -> str | None:
    """ssl wants files: kubeconfig's base64 ``*-data`` is written to a private temporary one."""
    if path:
        return str(path)
    if not data:
        return None
    f = tempfile.NamedTemporaryFile(prefix="cryptopipe-operator-", suffix=".pem", delete=False)  # noqa: SIM115
    with f:
        f.write(base64.b64decode(data))
    return f.name


def login(settings: kopf.OperatorSettings, logger: logging.Logger | logging.LoggerAdapter) -> kopf.ConnectionInfo:
    """$KUBECONFIG when set (explicit wins: tests, ``cryptopipe dev cluster``), else the pod's
    ServiceAccount: kopf's own login functions, so the operator and kopf see the same identity."""
    info = None
    if os.environ.get("KUBECONFIG"):
        info = kopf.login_with_kubeconfig(logger=logger, settings=settings)
    info = info or kopf.login_with_service_account(logger=logger, settings=settings)
    if info is None:
        raise kopf.LoginError("neither $KUBECONFIG nor a ServiceAccount token is available")
    return info


# --- reconcile --------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _pipeline_path(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return object_path(f"{API_GROUP}/{API_VERSION}", "CryptoPipeline", meta["namespace"], meta["name"])


def _ref(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


async def reconcile(api: KubeApi, body: Mapping[str, Any], emit: Emit) -> list[Mapping[str, Any]] | None:
    """Bring the children in line with the spec and record what was done in status.

    Order matters for a crash at any point: children first, then status. A restart before the
    status write recomputes the same checkpoint generation (next_checkpoint_generation compares
    with the fingerprint in status) and re-applies the same objects. Returns the conditions
    written, or None for an invalid spec.
    """
    meta, status = body["metadata"], body.get("status") or {}
    generation = meta["generation"]
    previous = status.get("conditions") or []
    try:
        pipeline = parse_pipeline(body)
    except SpecError as exc:
        # nothing is applied: the children stay as the last valid spec left them
        message = str(exc)
        await api.patch_status(
            _pipeline_path(body),
            validation_failed_status(message, generation=generation, previous=previous, now=_now()),
        )
        emit("Warning", "InvalidSpec", message)
        return None

    checkpoint = next_checkpoint_generation(status, pipeline.spec)
    created, updated = [], []
    for manifest in render_children(pipeline, checkpoint):
        meta_c = manifest["metadata"]
        path = object_path(manifest["apiVersion"], manifest["kind"], meta_c["namespace"], meta_c["name"])
        before = await api.get(path)  # only to say in an Event what changed
        after = await api.apply(manifest)
        if before is None:
            created.append(_ref(manifest))
        elif before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]:
            updated.append(_ref(manifest))
    if created or updated:
        parts = [f"created {', '.join(created)}" if created else "", f"updated {', '.join(updated)}" if updated else ""]
        emit("Normal", "ChildrenApplied", "; ".join(p for p in parts if p))
    deleted = [ref for ref in unwanted_children(pipeline) if await _delete_unwanted(api, pipeline, ref)]
    if deleted:
        names = ", ".join(f"{ref.kind}/{ref.name}" for ref in deleted)
        emit("Normal", "ChildrenDeleted", f"no longer wanted by the spec: deleted {names}")

    new_status = checkpoint_status(pipeline.spec, checkpoint)
    old_checkpoint = status.get("checkpointGeneration")
    if old_checkpoint is not None and old_checkpoint != checkpoint:
        emit(
            "Normal",
            "CheckpointGenerationBumped",
            f"state-breaking change (windows, watermark or sink): checkpoint generation {old_checkpoint} -> "
            f"{checkpoint}, Spark starts from {new_status['checkpointPath']}",
        )
    new_status |= await _aggregate(api, pipeline, generation, previous)
    await api.patch_status(_pipeline_path(body), new_status)
    _emit_readiness_change(emit, previous, new_status["conditions"])
    return new_status["conditions"]


async def _delete_unwanted(api: KubeApi, pipeline: Pipeline, ref: ChildRef) -> bool:
    """Delete a child the spec no longer wants (the lake monitor turned off). Only an object that
    is this pipeline's: labelled with its instance and the child's component, and owned by its
    uid; anything else of that name (a user's own Deployment) is left alone. Returns whether one
    was deleted."""
    path = object_path(ref.api_version, ref.kind, pipeline.namespace, ref.name)
    obj = await api.get(path)
    if obj is None:
        return False
    meta = obj["metadata"]
    labels = meta.get("labels") or {}
    ours = (
        labels.get("app.kubernetes.io/instance") == pipeline.name
        and labels.get("app.kubernetes.io/component") == ref.component
        and any(owner.get("uid") == pipeline.uid for owner in meta.get("ownerReferences") or [])
    )
    if not ours:
        log.warning("%s/%s is not %s's %s: left in place", ref.kind, ref.name, pipeline.name, ref.component)
        return False
    # the uid precondition: exactly the object checked above, never one created since by the same name;
    # Background: its ReplicaSets and pods go by garbage collection
    options = {
        "apiVersion": "v1",
        "kind": "DeleteOptions",
        "propagationPolicy": "Background",
        "preconditions": {"uid": meta["uid"]},
    }
    return await api.request("DELETE", path, body=options, missing_ok=True) is not None


async def refresh_status(api: KubeApi, body: Mapping[str, Any], emit: Emit) -> list[Mapping[str, Any]] | None:
    """Recompute the conditions from the children (the periodic timer).

    Only for a generation the reconcile has applied: while one is pending (or its spec is
    invalid) the reconcile owns the status, and a refresh would report the old children as if
    they were the new spec's. Returns the current conditions, or None when it did not look.
    """
    meta, status = body["metadata"], body.get("status") or {}
    if status.get("observedGeneration") != meta.get("generation") or status.get("phase") == "Invalid":
        return None
    try:
        pipeline = parse_pipeline(body)
    except SpecError:
        return None
    previous = status.get("conditions") or []
    fresh = await _aggregate(api, pipeline, meta["generation"], previous)
    if fresh["conditions"] == previous and fresh["phase"] == status.get("phase"):
        return previous  # no write (and no new resourceVersion) for a status that did not change
    await api.patch_status(_pipeline_path(body), fresh)
    _emit_readiness_change(emit, previous, fresh["conditions"])
    return fresh["conditions"]


async def _aggregate(
    api: KubeApi, pipeline: Pipeline, generation: int, previous: list[Mapping[str, Any]]
) -> dict[str, Any]:
    ns = pipeline.namespace

    async def child_status(path: str) -> Mapping[str, Any] | None:
        obj = await api.get(path)
        return None if obj is None else obj.get("status") or {}

    topic = await child_status(object_path(STRIMZI_API_VERSION, "KafkaTopic", ns, trades_topic_name(pipeline)))
    dlq = await child_status(object_path(STRIMZI_API_VERSION, "KafkaTopic", ns, dlq_topic_name(pipeline)))
    deployment = await child_status(object_path("apps/v1", "Deployment", ns, deployment_name(pipeline)))
    spark = await child_status(object_path(SPARK_API_VERSION, "SparkApplication", ns, spark_application_name(pipeline)))
    monitor = None
    if pipeline.spec.monitor.enabled:
        monitor = await child_status(object_path("apps/v1", "Deployment", ns, monitor_deployment_name(pipeline)))
    return aggregate_conditions(
        pipeline, generation, topic, dlq, deployment, spark, previous=previous, now=_now(), monitor_status=monitor
    )


def _ready(conditions: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _emit_readiness_change(emit: Emit, previous: list[Mapping[str, Any]], current: list[Mapping[str, Any]]) -> None:
    before, after = _ready(previous), _ready(current)
    if (before.get("status"), before.get("reason")) == (after.get("status"), after.get("reason")):
        return
    kind = "Normal" if after.get("status") != "False" else "Warning"
    emit(kind, after.get("reason", "Unknown"), after.get("message", ""))


# --- deletion ---------------------------------------------------------------------------------------


async def retain_topics(api: KubeApi, body: Mapping[str, Any], emit: Emit) -> None:
    """deletionPolicy Retain: before the CryptoPipeline goes, take its KafkaTopics out of garbage
    collection (no ownerReference) and out of Strimzi's hands (``strimzi.io/managed: "false"``),
    so the Kafka topics and their data survive. The lake is never touched.

    Applied from the objects as they are (not re-rendered): a spec that became invalid must not
    stop the topics from being kept. Server-side apply by the same field manager drops the owner
    reference it once set; if a CryptoPipeline of the same name is created again, its apply
    adopts the topics again and drops the annotation.
    """
    meta = body["metadata"]
    namespace = meta["namespace"]
    # the topics by the labels every child carries, and only those this pipeline owns (a topic
    # already retained by an earlier pipeline of the same name is left as it is)
    selector = f"app.kubernetes.io/instance={meta['name']},app.kubernetes.io/component=topic"
    listing = await api.request(
        "GET", object_path(STRIMZI_API_VERSION, "KafkaTopic", namespace), params={"labelSelector": selector}
    )
    kept = []
    for topic in (listing or {}).get("items", []):
        topic_meta = topic["metadata"]
        if not any(ref.get("uid") == meta["uid"] for ref in topic_meta.get("ownerReferences") or []):
            continue
        await api.apply(
            {
                "apiVersion": STRIMZI_API_VERSION,
                "kind": "KafkaTopic",
                "metadata": {
                    "name": topic_meta["name"],
                    "namespace": namespace,
                    "labels": copy.deepcopy(topic_meta.get("labels") or {}),
                    "annotations": {STRIMZI_MANAGED: "false"},
                },
                "spec": copy.deepcopy(topic.get("spec") or {}),
            }
        )
        kept.append(f"KafkaTopic/{topic_meta['name']}")
    if kept:
        emit(
            "Normal",
            "TopicsRetained",
            f"deletionPolicy Retain: kept {', '.join(kept)} (unowned, strimzi.io/managed=false)",
        )


async def get_secret(api: KubeApi, namespace: str, name: str) -> dict[str, str]:
    """A Secret's ``data`` (base64 values, as stored). Needs ``get`` on secrets (the chart's
    ``rbac.readSinkSecrets``); a missing Secret is an error, not an empty dict."""
    secret = await api.get(object_path("v1", "Secret", namespace, name))
    if secret is None:
        raise lake_cleanup.LakeCleanupError(f"Secret {namespace}/{name} not found (spec.sink.credentialsSecretRef)")
    return secret.get("data") or {}


async def delete_lake(api: KubeApi, body: Mapping[str, Any], emit: Emit) -> None:
    """deletionPolicy Delete: remove the pipeline's lake prefix (candles and checkpoints) before the
    CryptoPipeline goes; the children go by garbage collection. Any failure is reported as a
    Warning and re-raised: kopf retries after its backoff, without limit, and the finalizer keeps
    the CryptoPipeline until the lake is gone."""
    try:
        pipeline = parse_pipeline(body)
        location = lake_cleanup.lake_location(pipeline)
        lake_cleanup.checked_root(location)  # refuse before reading any credentials
        ref = pipeline.spec.sink.credentials_secret_ref
        connection = lake_cleanup.sink_connection(pipeline, await get_secret(api, pipeline.namespace, ref.name))
        removed = await asyncio.to_thread(lake_cleanup.delete_lake_prefix, connection, location)
    except Exception as exc:
        hint = " (is rbac.readSinkSecrets on?)" if isinstance(exc, ApiError) and exc.status == 403 else ""
        emit("Warning", "LakeDeleteFailed", f"deletionPolicy Delete: {exc}{hint}; retrying")
        raise
    emit("Normal", "LakeDeleted", f"deletionPolicy Delete: removed {removed} objects under s3://{location.root}/")
