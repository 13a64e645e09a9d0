"""Reconcile and status: what a CryptoPipeline's create/update/resume handlers and its status
timer do against the API server (kube_api.py).

Everything decided here comes from the pure core (spec.py, render*.py, status.py); this module
only reads and writes. The one child deleted here is an optional one the spec turned off (the lake
monitor); the others go by garbage collection, and what a deletion policy does before the
CryptoPipeline goes is deletion.py's.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from cryptopipe_operator.kube_api import Emit, KubeApi, object_path
from cryptopipe_operator.render import ChildRef, render_children, unwanted_children
from cryptopipe_operator.render_ingestion import deployment_name
from cryptopipe_operator.render_kafka import STRIMZI_API_VERSION, dlq_topic_name, trades_topic_name
from cryptopipe_operator.render_monitor import deployment_name as monitor_deployment_name
from cryptopipe_operator.render_spark import SPARK_API_VERSION, spark_application_name
from cryptopipe_operator.settings import DEFAULT_SPARK_DRIVER_CLUSTER_ROLE
from cryptopipe_operator.spec import (
    API_GROUP,
    API_VERSION,
    Pipeline,
    SpecError,
    checkpoint_status,
    next_checkpoint_generation,
    parse_pipeline,
)
from cryptopipe_operator.status import aggregate_conditions, validation_failed_status

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _pipeline_path(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return object_path(f"{API_GROUP}/{API_VERSION}", "CryptoPipeline", meta["namespace"], meta["name"])


def _path(manifest: Mapping[str, Any]) -> str:
    meta = manifest["metadata"]
    return object_path(manifest["apiVersion"], manifest["kind"], meta["namespace"], meta["name"])


def _ref(manifest: Mapping[str, Any]) -> str:
    return f"{manifest['kind']}/{manifest['metadata']['name']}"


async def reconcile(
    api: KubeApi, body: Mapping[str, Any], emit: Emit, *, spark_driver_role: str = DEFAULT_SPARK_DRIVER_CLUSTER_ROLE
) -> list[Mapping[str, Any]]:
    """Bring the children in line with the spec and record what was done in status.

    Order matters for a crash at any point: children first, then status. A restart before the
    status write recomputes the same checkpoint generation (next_checkpoint_generation compares
    with the fingerprint in status) and re-applies the same objects. Returns the conditions
    written.

    An invalid spec is recorded (status phase Invalid, Warning InvalidSpec) and refused with
    kopf.PermanentError: no retry of the same spec can succeed; the next change of the spec runs
    the handler again.
    """
    meta, status = body["metadata"], body.get("status") or {}
    generation = meta["generation"]
    previous: list[Mapping[str, Any]] = status.get("conditions") or []
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
        raise kopf.PermanentError(f"invalid spec, nothing applied: {message}") from None

    checkpoint = next_checkpoint_generation(status, pipeline.spec)
    created, updated = [], []
    for manifest in render_children(pipeline, checkpoint, spark_driver_role=spark_driver_role):
        before = await api.get(_path(manifest))  # only to say in an Event what changed
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

    new_status: dict[str, Any] = checkpoint_status(pipeline.spec, checkpoint)
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
    conditions: list[Mapping[str, Any]] = new_status["conditions"]
    _emit_readiness_change(emit, previous, conditions)
    return conditions


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
    previous: list[Mapping[str, Any]] = status.get("conditions") or []
    fresh = await _aggregate(api, pipeline, meta["generation"], previous)
    if fresh["conditions"] == previous and fresh["phase"] == status.get("phase"):
        return previous  # no write (and no new resourceVersion) for a status that did not change
    await api.patch_status(_pipeline_path(body), fresh)
    conditions: list[Mapping[str, Any]] = fresh["conditions"]
    _emit_readiness_change(emit, previous, conditions)
    return conditions


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
