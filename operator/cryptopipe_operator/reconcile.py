"""Reconcile and status: what a CryptoPipeline's create/update/resume handlers and its status
timer do against the API server (kube_api.py).

Everything decided here comes from the pure core (spec.py, render*.py, status.py); this module
only reads and writes. The one child deleted here is an optional one the spec turned off (the lake
monitor); the others go by garbage collection, and what a deletion policy does before the
CryptoPipeline goes is deletion.py's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import kopf

from cryptopipe_operator import lake_cleanup
from cryptopipe_operator.drift import drifted
from cryptopipe_operator.kube_api import ApiError, Emit, KubeApi, object_path
from cryptopipe_operator.lake_claims import LakeClaim, bucket_key, claim_of, older_overlapping
from cryptopipe_operator.lake_generation import lake_checkpoint_generation
from cryptopipe_operator.render import ChildRef, Manifest, apply_stages, render_children, unwanted_children
from cryptopipe_operator.render_common import MANAGED_BY
from cryptopipe_operator.render_ingestion import deployment_name
from cryptopipe_operator.render_kafka import STRIMZI_API_VERSION, dlq_topic_name, trades_topic_name
from cryptopipe_operator.render_monitor import deployment_name as monitor_deployment_name
from cryptopipe_operator.render_spark import SPARK_API_VERSION, spark_application_name
from cryptopipe_operator.retry_policy import StepFailed
from cryptopipe_operator.secret_access import read_sink_secret
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
from cryptopipe_operator.spec_compat import known_spec, with_newer_spec_condition
from cryptopipe_operator.status import (
    RECONCILE_FAILED,
    aggregate_conditions,
    conflict_status,
    reconcile_failed_status,
    validation_failed_status,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


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


async def _all(calls: Iterable[Awaitable[T]]) -> list[T]:
    """The calls' results, the calls sent at once: a reconcile is mostly round trips to the API
    server, and one after another they added up to most of its time. Every call ends before this
    returns; the first failure (in the calls' order) is raised then, none left running."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]  # no exceptions left among them


async def _apply_in_stages(api: KubeApi, manifests: list[Manifest]) -> dict[str, dict[str, Any]]:
    """Apply the children stage by stage (render.apply_stages: the workloads last), each stage at
    once. Returns each applied child as the API server answered, by ``Kind/name``."""
    applied: dict[str, dict[str, Any]] = {}
    for stage in apply_stages(manifests):
        answers = await _all(_apply(api, manifest) for manifest in stage)
        applied |= {_ref(manifest): answer for manifest, answer in zip(stage, answers, strict=True)}
    return applied


class Conflict(kopf.TemporaryError):
    """Nothing applied: what the pipeline would write is someone else's. Retried after a delay
    (the other pipeline or object may go), the condition and Event only when they change."""


async def reconcile(
    api: KubeApi,
    body: Mapping[str, Any],
    emit: Emit,
    *,
    spark_driver_role: str = DEFAULT_SPARK_DRIVER_CLUSTER_ROLE,
    lake_claims: Mapping[str, Iterable[LakeClaim]],
    conflict_retry_s: float = 60.0,
) -> list[Mapping[str, Any]]:
    """Bring the children in line with the spec and record what was done in status.

    Order matters for a crash at any point: children first, then status. A restart before the
    status write recomputes the same checkpoint generation (next_checkpoint_generation compares
    with the fingerprint in status) and re-applies the same objects. Returns the conditions
    written.

    An invalid spec is recorded (status phase Invalid, Warning InvalidSpec) and refused with
    kopf.PermanentError: no retry of the same spec can succeed; the next change of the spec runs
    the handler again.

    Nothing is applied either (Ready False, phase Conflict, a Warning Event, kopf.TemporaryError
    after ``conflict_retry_s``) when the pipeline's lake space equals or nests with an older
    pipeline's, or its lake marker names another pipeline (LakeConflict), or an object with a
    child's name exists and is not this pipeline's (ChildConflict). ``lake_claims``: the watched
    pipelines' lake spaces by bucket (lake_claims.py; the kopf index ``lake_spaces``).
    """
    meta, status = body["metadata"], body.get("status") or {}
    generation = meta["generation"]
    previous: list[Mapping[str, Any]] = status.get("conditions") or []
    body, newer_fields = known_spec(body)  # a newer CRD's fields: ignored, named in a condition
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

    async def refuse(reason: str, message: str) -> None:
        await api.patch_status(
            _pipeline_path(body), conflict_status(reason, message, generation=generation, previous=previous, now=_now())
        )
        before = _ready(previous)
        if (before.get("reason"), before.get("message")) != (reason, message):
            emit("Warning", reason, message)
        raise Conflict(f"nothing applied: {message}", delay=conflict_retry_s)

    lake_conflict = await _lake_conflict(api, pipeline, body, lake_claims)
    if lake_conflict is not None:
        await refuse("LakeConflict", lake_conflict)

    # never behind the lake's generation records (a status lost with the pipeline's re-creation)
    checkpoint = await lake_checkpoint_generation(
        api, pipeline, next_checkpoint_generation(status, pipeline.spec, pipeline.lake_prefix)
    )
    manifests = render_children(pipeline, checkpoint, spark_driver_role=spark_driver_role)
    existing = await _all(_get(api, manifest) for manifest in manifests)
    taken = _foreign(manifests, existing, pipeline)
    if taken:
        await refuse(CHILD_CONFLICT, _child_conflict_message(taken, pipeline))

    created, updated = [], []
    applied = await _apply_in_stages(api, manifests)
    for manifest, before in zip(manifests, existing, strict=True):
        after = applied[_ref(manifest)]
        if before is None:
            created.append(_ref(manifest))
        elif before["metadata"]["resourceVersion"] != after["metadata"]["resourceVersion"]:
            updated.append(_ref(manifest))
    if created or updated:
        parts = [f"created {', '.join(created)}" if created else "", f"updated {', '.join(updated)}" if updated else ""]
        emit("Normal", "ChildrenApplied", "; ".join(p for p in parts if p))
    deleted = await _delete_unwanted(api, pipeline, unwanted_children(pipeline))
    if deleted:
        names = ", ".join(f"{ref.kind}/{ref.name}" for ref in deleted)
        emit("Normal", "ChildrenDeleted", f"no longer wanted by the spec: deleted {names}")

    new_status: dict[str, Any] = checkpoint_status(pipeline.spec, checkpoint, pipeline.lake_prefix)
    old_checkpoint = status.get("checkpointGeneration")
    if old_checkpoint is not None and old_checkpoint != checkpoint:
        emit(
            "Normal",
            "CheckpointGenerationBumped",
            f"state-breaking change (or the lake holds a newer generation): checkpoint generation {old_checkpoint} -> "
            f"{checkpoint}, Spark starts from {new_status['checkpointPath']}",
        )
    new_status |= await _aggregate(api, pipeline, generation, previous)
    new_status["conditions"] = with_newer_spec_condition(
        new_status["conditions"], newer_fields, generation=generation, previous=previous, now=_now()
    )
    await api.patch_status(_pipeline_path(body), new_status)
    conditions: list[Mapping[str, Any]] = new_status["conditions"]
    _emit_readiness_change(emit, previous, conditions)
    return conditions


async def _get(api: KubeApi, manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return await api.get(_path(manifest))
    except Exception as exc:
        raise StepFailed(f"reading {_ref(manifest)}", exc) from exc


async def _apply(api: KubeApi, manifest: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return await api.apply(manifest)
    except Exception as exc:
        raise StepFailed(f"applying {_ref(manifest)}", exc) from exc


async def record_failure(api: KubeApi, body: Mapping[str, Any], emit: Emit, message: str) -> None:
    """A failed reconcile in status (Ready False, ReconcileFailed, the failure named, the generation
    it failed on) and a Warning Event, posted only when the failure differs from the one already
    reported: a pipeline retried for hours posts one Event, not one per attempt. Best effort: when
    the status cannot be written either (the API server down), the failure stays in the log."""
    meta, status = body["metadata"], body.get("status") or {}
    previous: list[Mapping[str, Any]] = status.get("conditions") or []
    failed = reconcile_failed_status(message, generation=meta["generation"], previous=previous, now=_now())
    try:
        await api.patch_status(_pipeline_path(body), failed)
    except Exception as exc:  # noqa: BLE001 - the reconcile's own failure is what gets retried
        log.warning("could not record the failed reconcile of %s/%s: %s", meta["namespace"], meta["name"], exc)
    before = _ready(previous)
    if (before.get("reason"), before.get("message")) != (RECONCILE_FAILED, message):
        emit("Warning", RECONCILE_FAILED, message)


CHILD_CONFLICT = "ChildConflict"


def _child_conflict_message(taken: list[str], pipeline: Pipeline) -> str:
    return (
        f"{', '.join(taken)} already exist{'s' if len(taken) == 1 else ''} in namespace {pipeline.namespace} "
        "and not as this pipeline's children: nothing applied (rename or delete them, or rename the pipeline)"
    )


def _foreign(manifests: list[Manifest], live: list[dict[str, Any] | None], pipeline: Pipeline) -> list[str]:
    """The children (``Kind/name``) whose name an object that is not this pipeline's holds."""
    return [_ref(m) for m, obj in zip(manifests, live, strict=True) if obj is not None and not _ours(obj, m, pipeline)]


def _ours(obj: Mapping[str, Any], manifest: Mapping[str, Any], pipeline: Pipeline) -> bool:
    """Whether an existing object with a child's name may be applied over: it is this pipeline's
    (its uid among the ownerReferences), or one an earlier pipeline of this name left behind
    (deletionPolicy Retain's topics, or children garbage collection has not removed yet): labelled
    as that child by this operator, and owned by nothing but a CryptoPipeline of this name (which,
    as this one exists, is gone). Anything else (another team's object, another pipeline's child)
    is never taken over."""
    meta = obj["metadata"]
    owners = meta.get("ownerReferences") or []
    if any(owner.get("uid") == pipeline.uid for owner in owners):
        return True
    labels = meta.get("labels") or {}
    wanted: Mapping[str, str] = manifest["metadata"].get("labels") or {}
    earlier_self = all(
        owner.get("kind") == "CryptoPipeline"
        and str(owner.get("apiVersion", "")).startswith(f"{API_GROUP}/")
        and owner.get("name") == pipeline.name
        for owner in owners
    )
    return (
        earlier_self
        and labels.get("app.kubernetes.io/managed-by") == MANAGED_BY
        and labels.get("app.kubernetes.io/instance") == pipeline.name
        and labels.get("app.kubernetes.io/component") == wanted.get("app.kubernetes.io/component")
    )


async def _lake_conflict(
    api: KubeApi, pipeline: Pipeline, body: Mapping[str, Any], lake_claims: Mapping[str, Iterable[LakeClaim]]
) -> str | None:
    """Why the pipeline may not use its lake space, or None: an older pipeline (by creation time,
    then namespace/name) whose space equals or nests with it, or a marker in the lake naming
    another pipeline."""
    mine = claim_of(pipeline, body["metadata"].get("creationTimestamp") or "")
    other = older_overlapping(mine, lake_claims.get(bucket_key(pipeline.lake), ()))
    if other is not None:
        return (
            f"lake space s3://{mine.lake.root}/ overlaps s3://{other.lake.root}/ of CryptoPipeline "
            f"{other.namespace}/{other.name}: set spec.sink.prefix to a path of this pipeline's own"
        )
    return await _claim_lake(api, pipeline)


async def _claim_lake(api: KubeApi, pipeline: Pipeline) -> str | None:
    """Write (or check) the ownership marker in the lake, with the sink Secret's credentials. When
    the Secret cannot be read (missing, RBAC) or S3 does not answer, the marker is left for a later
    reconcile and the pipeline goes on: deletionPolicy Delete refuses a prefix without it."""
    ref = pipeline.spec.sink.credentials_secret_ref
    secret = await read_sink_secret(api, pipeline.namespace, ref.name)
    if secret is None:
        log.info("lake marker not checked: Secret %s/%s not readable", pipeline.namespace, ref.name)
        return None
    try:
        connection = lake_cleanup.sink_connection(pipeline, secret.get("data"))
        owner = lake_cleanup.LakeOwner.of(pipeline)
        other = await asyncio.to_thread(lake_cleanup.claim_lake, connection, pipeline.lake, owner)
    except (lake_cleanup.LakeCleanupError, OSError) as exc:
        log.warning("lake marker not checked for %s/%s: %s", pipeline.namespace, pipeline.name, exc)
        return None
    if other is None:
        return None
    return (
        f"lake space s3://{pipeline.lake.root}/ is marked as {other}'s ({lake_cleanup.OWNER_MARKER}): set "
        "spec.sink.prefix to a path of this pipeline's own"
    )


async def _delete_unwanted(api: KubeApi, pipeline: Pipeline, refs: list[ChildRef]) -> list[ChildRef]:
    """Delete the children the spec no longer wants (the lake monitor turned off), in ``refs``'
    order (all looked up at once first; almost always none exists). Only an object that is this
    pipeline's: labelled with its instance and the child's component, and owned by its uid;
    anything else of that name (a user's own Deployment) is left alone. Returns those deleted."""
    paths = [object_path(ref.api_version, ref.kind, pipeline.namespace, ref.name) for ref in refs]
    found = await _all(api.get(path) for path in paths)
    deleted = []
    for ref, path, obj in zip(refs, paths, found, strict=True):
        if obj is not None and await _delete_if_ours(api, pipeline, ref, path, obj):
            deleted.append(ref)
    return deleted


async def _delete_if_ours(api: KubeApi, pipeline: Pipeline, ref: ChildRef, path: str, obj: Mapping[str, Any]) -> bool:
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


def _applied(body: Mapping[str, Any]) -> bool:
    """Whether the pipeline's current generation has been applied: the reconcile wrote its status
    and it is not one that applied nothing (invalid spec, conflict, a failure being retried)."""
    meta, status = body["metadata"], body.get("status") or {}
    return (
        status.get("observedGeneration") == meta.get("generation")
        and status.get("phase") not in ("Invalid", "Conflict")
        and _ready(status.get("conditions") or []).get("reason") != RECONCILE_FAILED
    )


async def refresh_status(api: KubeApi, body: Mapping[str, Any], emit: Emit) -> list[Mapping[str, Any]] | None:
    """Recompute the conditions from the children (the periodic timer).

    Only for a generation the reconcile has applied: while one is pending (or its spec is invalid,
    or its reconcile failed and is being retried) the reconcile owns the status, and a refresh
    would report the old children as if they were the new spec's. The pipeline is read anew (the
    body kopf gave the timer may predate a reconcile's status write), and the status written only
    if the pipeline is still at the version read: a reconcile or spec change in between makes the
    write fail with 409, and this refresh is skipped, never writing an older generation's status
    over a newer one. Returns the current conditions, or None when it did not look or write.
    """
    fresh_body = await api.get(_pipeline_path(body))
    if fresh_body is None or not _applied(fresh_body):
        return None
    fresh_body, newer_fields = known_spec(fresh_body)
    meta, status = fresh_body["metadata"], fresh_body.get("status") or {}
    try:
        pipeline = parse_pipeline(fresh_body)
    except SpecError:
        return None
    previous: list[Mapping[str, Any]] = status.get("conditions") or []
    fresh = await _aggregate(api, pipeline, meta["generation"], previous)
    fresh["conditions"] = with_newer_spec_condition(
        fresh["conditions"], newer_fields, generation=meta["generation"], previous=previous, now=_now()
    )
    if fresh["conditions"] == previous and fresh["phase"] == status.get("phase"):
        return previous  # no write (and no new resourceVersion) for a status that did not change
    if not await _patch_status_unless_changed(api, fresh_body, fresh):
        return None
    conditions: list[Mapping[str, Any]] = fresh["conditions"]
    _emit_readiness_change(emit, previous, conditions)
    return conditions


async def repair_drift(
    api: KubeApi,
    body: Mapping[str, Any],
    emit: Emit,
    *,
    spark_driver_role: str = DEFAULT_SPARK_DRIVER_CLUSTER_ROLE,
) -> list[str]:
    """Re-create or re-apply the children of the applied generation that were deleted or changed
    behind the operator's back (the periodic drift repair; Strimzi's periodic reconciliation).

    Each child is read and re-applied only when it is gone or a field the operator renders has
    another value (drift.py); server-side apply then sets back exactly the operator's fields.
    Nothing while the current generation is not applied (the reconcile does it).

    An object that is not the pipeline's where a child was (deleted by hand, and someone else's
    object created by its name) is left alone and, as in the reconcile, nothing is applied: the
    status says ChildConflict (Ready False, phase Conflict, the objects named; a Warning Event when
    that changes), which stops the status timer from reading the other object as the child. Drift
    repair goes on looking, and once the name is free it re-creates the child and writes the
    status from the children again. Returns the children repaired (``Kind/name``), announced in
    one Normal Event ``DriftRepaired``.
    """
    fresh_body = await api.get(_pipeline_path(body))
    if fresh_body is None or fresh_body["metadata"].get("deletionTimestamp"):
        return []
    meta, status = fresh_body["metadata"], fresh_body.get("status") or {}
    in_conflict = _child_conflict_reported(fresh_body)
    if not (_applied(fresh_body) or in_conflict):
        return []
    try:
        pipeline = parse_pipeline(fresh_body)
    except SpecError:
        return []
    checkpoint = next_checkpoint_generation(status, pipeline.spec, pipeline.lake_prefix)
    if checkpoint != status.get("checkpointGeneration"):
        return []  # the recorded state is not this spec's: the reconcile's to sort out
    manifests = render_children(pipeline, checkpoint, spark_driver_role=spark_driver_role)
    live = await _all(_get(api, manifest) for manifest in manifests)
    previous: list[Mapping[str, Any]] = status.get("conditions") or []
    taken = _foreign(manifests, live, pipeline)
    if taken:
        log.warning("drift repair: %s not %s's, left alone", ", ".join(taken), pipeline.name)
        message = _child_conflict_message(taken, pipeline)
        before = _ready(previous)
        if (before.get("reason"), before.get("message")) != (CHILD_CONFLICT, message):
            conflict = conflict_status(
                CHILD_CONFLICT, message, generation=meta["generation"], previous=previous, now=_now()
            )
            if await _patch_status_unless_changed(api, fresh_body, conflict):
                emit("Warning", CHILD_CONFLICT, message)
        return []
    drifted_ones = [manifest for manifest, obj in zip(manifests, live, strict=True) if drifted(manifest, obj)]
    applied = await _apply_in_stages(api, drifted_ones)
    repaired = []
    for manifest, obj in zip(manifests, live, strict=True):
        after = applied.get(_ref(manifest))
        if after is not None and (
            obj is None or after["metadata"]["resourceVersion"] != obj["metadata"]["resourceVersion"]
        ):
            repaired.append(_ref(manifest))
    if repaired:
        emit("Normal", "DriftRepaired", f"deleted or changed by hand, re-applied from the spec: {', '.join(repaired)}")
    if in_conflict:  # the name is free again and the children are back: the status from them
        fresh = await _aggregate(api, pipeline, meta["generation"], previous)
        if await _patch_status_unless_changed(api, fresh_body, fresh):
            _emit_readiness_change(emit, previous, fresh["conditions"])
    return repaired


def _child_conflict_reported(body: Mapping[str, Any]) -> bool:
    """Whether the status of the current generation says ChildConflict (the reconcile's or the
    drift repair's)."""
    meta, status = body["metadata"], body.get("status") or {}
    return (
        status.get("observedGeneration") == meta.get("generation")
        and status.get("phase") == "Conflict"
        and _ready(status.get("conditions") or []).get("reason") == CHILD_CONFLICT
    )


async def _patch_status_unless_changed(api: KubeApi, body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Write the status only if the pipeline is still at the version read (a reconcile or spec
    change in between wins: 409, nothing written, False)."""
    meta = body["metadata"]
    try:
        await api.patch_status(_pipeline_path(body), status, resource_version=meta["resourceVersion"])
    except ApiError as exc:
        if exc.status != 409:
            raise
        log.debug("status of %s/%s not written: changed meanwhile", meta["namespace"], meta["name"])
        return False
    return True


async def _aggregate(
    api: KubeApi, pipeline: Pipeline, generation: int, previous: list[Mapping[str, Any]]
) -> dict[str, Any]:
    ns = pipeline.namespace

    async def child(path: str) -> tuple[Mapping[str, Any] | None, int | None]:
        """The child's status ({} before its controller wrote one; None: no such child) and its
        metadata.generation."""
        obj = await api.get(path)
        if obj is None:
            return None, None
        return obj.get("status") or {}, obj["metadata"].get("generation")

    paths = [
        object_path(STRIMZI_API_VERSION, "KafkaTopic", ns, trades_topic_name(pipeline)),
        object_path(STRIMZI_API_VERSION, "KafkaTopic", ns, dlq_topic_name(pipeline)),
        object_path("apps/v1", "Deployment", ns, deployment_name(pipeline)),
        object_path(SPARK_API_VERSION, "SparkApplication", ns, spark_application_name(pipeline)),
    ]
    if pipeline.spec.monitor.enabled:
        paths.append(object_path("apps/v1", "Deployment", ns, monitor_deployment_name(pipeline)))
    found = await _all(child(path) for path in paths)
    (topic, _), (dlq, _), (deployment, deployment_generation), (spark, _) = found[:4]
    monitor, monitor_generation = found[4] if pipeline.spec.monitor.enabled else (None, None)
    return aggregate_conditions(
        pipeline,
        generation,
        topic,
        dlq,
        deployment,
        spark,
        previous=previous,
        now=_now(),
        monitor_status=monitor,
        deployment_generation=deployment_generation,
        monitor_generation=monitor_generation,
    )


def _ready(conditions: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    return next((c for c in conditions if c.get("type") == "Ready"), {})


def _emit_readiness_change(emit: Emit, previous: list[Mapping[str, Any]], current: list[Mapping[str, Any]]) -> None:
    before, after = _ready(previous), _ready(current)
    if (before.get("status"), before.get("reason")) == (after.get("status"), after.get("reason")):
        return
    kind = "Normal" if after.get("status") != "False" else "Warning"
    emit(kind, after.get("reason", "Unknown"), after.get("message", ""))
