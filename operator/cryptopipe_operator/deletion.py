"""The deletion policies: what happens before a CryptoPipeline goes (its finalizer's handlers).

Retain takes the Kafka topics out of garbage collection and out of Strimzi's hands; Delete stops
the pipeline's writers (Spark job, ingestion) and then removes the pipeline's lake prefix when its
ownership marker says it is the pipeline's (lake_cleanup.py). Either way the other children go by
garbage collection.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from cryptopipe_operator import lake_cleanup
from cryptopipe_operator.kube_api import ApiError, Emit, KubeApi, object_path, transient_delay
from cryptopipe_operator.render_ingestion import deployment_name
from cryptopipe_operator.render_kafka import STRIMZI_API_VERSION
from cryptopipe_operator.render_spark import SPARK_API_VERSION, spark_application_name
from cryptopipe_operator.spec import API_GROUP, API_VERSION, Pipeline, SpecError, parse_pipeline
from cryptopipe_operator.spec_compat import known_spec
from cryptopipe_operator.status import deletion_blocked_status

log = logging.getLogger(__name__)

# Strimzi's (unidirectional) topic operator leaves the Kafka topic alone, and does not delete it
# with the KafkaTopic, when the KafkaTopic carries this annotation.
STRIMZI_MANAGED = "strimzi.io/managed"
# The chart's default RBAC reads no Secret (rbac.readSinkSecrets: false): a Delete pipeline's lake
# deletion is refused with 403, and says how to unblock it.
FORBIDDEN_SECRET_HINT = (
    " (the operator may not read the sink Secret: enable it with the chart value rbac.readSinkSecrets=true,"
    " or set spec.deletionPolicy: Retain to keep the lake and let the CryptoPipeline go)"
)
# deletionPolicy Delete's escape: with this annotation "true" the deletion finishes leaving the lake
SKIP_LAKE_CLEANUP = f"{API_GROUP}/skip-lake-cleanup"


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
        raise lake_cleanup.SinkSecretUnusable(f"Secret {namespace}/{name} not found (spec.sink.credentialsSecretRef)")
    return secret.get("data") or {}


async def stop_workloads(api: KubeApi, pipeline: Pipeline) -> tuple[list[str], list[str]]:
    """Delete the pipeline's writers (the SparkApplication, which writes the lake, and the ingestion
    Deployment, which feeds it), foreground so that each goes only after its pods. Only objects
    this pipeline owns (its uid in their ownerReferences), each by its uid. Returns (deletion
    requested now, still present)."""
    requested, present = [], []
    for api_version, kind, name in (
        (SPARK_API_VERSION, "SparkApplication", spark_application_name(pipeline)),
        ("apps/v1", "Deployment", deployment_name(pipeline)),
    ):
        path = object_path(api_version, kind, pipeline.namespace, name)
        obj = await api.get(path)
        if obj is None:
            continue
        meta = obj["metadata"]
        if not any(ref.get("uid") == pipeline.uid for ref in meta.get("ownerReferences") or []):
            continue  # not this pipeline's: never touched
        if not meta.get("deletionTimestamp"):
            options = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "propagationPolicy": "Foreground",
                "preconditions": {"uid": meta["uid"]},
            }
            if await api.request("DELETE", path, body=options, missing_ok=True) is None:
                continue
            requested.append(f"{kind}/{name}")
        present.append(f"{kind}/{name}")
    return requested, present


async def namespace_terminating(api: KubeApi, namespace: str) -> bool:
    """Whether the namespace is being deleted (then no Secret can be created in it again). Needs
    ``get`` on the namespace; without it the answer is False (retry as for any missing Secret)."""
    try:
        obj = await api.get(f"/api/v1/namespaces/{namespace}")
    except ApiError as exc:
        if exc.status == 403:
            return False
        raise
    if obj is None:
        return True
    return bool(obj["metadata"].get("deletionTimestamp")) or (obj.get("status") or {}).get("phase") == "Terminating"


async def _report_blocked(api: KubeApi, body: Mapping[str, Any], reason: str, message: str) -> None:
    """Ready False with the reason, on the pipeline being deleted (best effort: the Event and the
    log say it too, and in a namespace being deleted the write may be refused)."""
    meta = body["metadata"]
    previous = (body.get("status") or {}).get("conditions") or []
    status = deletion_blocked_status(
        reason, message, generation=meta.get("generation", 0), previous=previous, now=datetime.now(UTC)
    )
    path = object_path(f"{API_GROUP}/{API_VERSION}", "CryptoPipeline", meta["namespace"], meta["name"])
    try:
        await api.patch_status(path, status)
    except Exception as exc:  # noqa: BLE001 - the condition is a courtesy; the handler's outcome stands
        log.info("status of %s/%s not written: %s", meta["namespace"], meta["name"], exc)


def skips_lake_cleanup(body: Mapping[str, Any]) -> bool:
    annotations = body["metadata"].get("annotations") or {}
    return str(annotations.get(SKIP_LAKE_CLEANUP, "")).lower() == "true"


async def delete_lake(
    api: KubeApi, body: Mapping[str, Any], emit: Emit, *, retry_s: float, misconfig_retry_s: float
) -> None:
    """deletionPolicy Delete: stop the pipeline's writers, then remove its lake prefix (candles and
    checkpoints), and only a prefix whose ownership marker names this pipeline; the other children
    go by garbage collection.

    In order: (1) the annotation ``cryptopipeline.io/skip-lake-cleanup: "true"`` ends here, the
    lake left in place (Warning LakeDeleteSkipped); (2) the SparkApplication and the ingestion
    Deployment are deleted (foreground: with their pods) and waited for (kopf.TemporaryError after
    ``retry_s`` until they are gone): a job still running could refill the prefix; (3) the prefix
    is removed, only when its marker names this pipeline (uid) and no marker of another pipeline
    lies below it.

    What no retry can change is refused once, as kopf.PermanentError: a spec the operator cannot
    read (the lake's location is unknown), a prefix that would reach beyond the pipeline's own lake,
    a marker missing or naming another pipeline, or a sink Secret that is gone while the namespace
    is being deleted (no one can create it again: Warning LakeDeleteAbandoned). The Warning
    LakeDeleteRefused says the lake is left in place, and kopf lets the CryptoPipeline go (its
    finalizer's handler is done, failed): data left behind is the safe side, and a finalizer held
    forever would hold the namespace's deletion too.

    Anything else is a Warning LakeDeleteFailed and kopf.TemporaryError, retried without limit
    while the finalizer keeps the CryptoPipeline: after ``misconfig_retry_s`` when a person must fix
    the sink Secret (missing, lacking a key, not readable for RBAC), else after the API server's
    Retry-After or ``retry_s`` (S3 unreachable or not done, the API server failing). Its message
    names the annotation that lets the deletion finish without the lake cleanup.
    """
    if skips_lake_cleanup(body):
        emit(
            "Warning",
            "LakeDeleteSkipped",
            f"deletionPolicy Delete: {SKIP_LAKE_CLEANUP}=true, the lake is left in place",
        )
        return
    try:
        pipeline = parse_pipeline(known_spec(body)[0])  # a newer CRD's fields are not a reason to refuse
        location = lake_cleanup.lake_location(pipeline)
        lake_cleanup.checked_root(location)  # refuse before reading any credentials
    except (SpecError, lake_cleanup.UnsafePrefix) as exc:
        reason = f"invalid spec ({exc})" if isinstance(exc, SpecError) else str(exc)
        emit("Warning", "LakeDeleteRefused", f"deletionPolicy Delete: {reason}; the lake is left in place")
        raise kopf.PermanentError(f"lake not deleted: {reason}") from exc

    escape = f'; annotate {SKIP_LAKE_CLEANUP}="true" to let the deletion finish leaving the lake'
    try:
        requested, present = await stop_workloads(api, pipeline)
    except ApiError as exc:
        if exc.status != 403:
            raise
        message = (
            f"deletionPolicy Delete: cannot stop the Spark job and ingestion before the lake ({exc}; the operator "
            f"needs delete on sparkapplications and deployments){escape}; retrying in {misconfig_retry_s:g}s"
        )
        emit("Warning", "LakeDeleteFailed", message)
        await _report_blocked(api, body, "LakeDeleteFailed", message)
        raise kopf.TemporaryError(f"lake not deleted yet: {exc}", delay=misconfig_retry_s) from exc
    if requested:
        emit("Normal", "StoppingWorkloads", f"deletionPolicy Delete: deleting {', '.join(requested)} before the lake")
    if present:
        raise kopf.TemporaryError(
            f"waiting for {', '.join(present)} to be gone before deleting the lake", delay=retry_s
        )

    ref = pipeline.spec.sink.credentials_secret_ref
    try:
        connection = lake_cleanup.sink_connection(pipeline, await get_secret(api, pipeline.namespace, ref.name))
    except lake_cleanup.SinkSecretUnusable as exc:
        if await namespace_terminating(api, pipeline.namespace):
            message = (
                f"deletionPolicy Delete: {exc} and namespace {pipeline.namespace} is being deleted (the Secret "
                f"cannot come back): s3://{location.root}/ is left in place"
            )
            log.warning("LakeDeleteAbandoned: %s", message)
            emit("Warning", "LakeDeleteAbandoned", message)
            await _report_blocked(api, body, "LakeDeleteAbandoned", message)
            raise kopf.PermanentError(f"lake not deleted: {exc}; namespace terminating") from exc
        message = f"deletionPolicy Delete: {exc}{escape}; retrying in {misconfig_retry_s:g}s"
        emit("Warning", "LakeDeleteFailed", message)
        await _report_blocked(api, body, "LakeDeleteFailed", message)
        raise kopf.TemporaryError(f"lake not deleted yet: {exc}", delay=misconfig_retry_s) from exc
    except ApiError as exc:
        forbidden = exc.status == 403
        delay = misconfig_retry_s if forbidden else transient_delay(exc, retry_s) or retry_s
        hint = FORBIDDEN_SECRET_HINT if forbidden else ""
        emit("Warning", "LakeDeleteFailed", f"deletionPolicy Delete: {exc}{hint}{escape}; retrying in {delay:g}s")
        raise kopf.TemporaryError(f"lake not deleted yet: {exc}{hint}", delay=delay) from exc

    owner = lake_cleanup.LakeOwner.of(pipeline)
    try:
        marked = await asyncio.to_thread(lake_cleanup.read_owner, connection, location)
        refusal = None
        if marked is None:
            refusal = (
                f"s3://{location.root}/ has no ownership marker ({lake_cleanup.OWNER_MARKER}) naming this pipeline"
            )
        elif marked.uid != owner.uid:
            refusal = f"s3://{location.root}/ belongs to {marked} by its marker"
        else:
            nested = await asyncio.to_thread(lake_cleanup.foreign_markers, connection, location, owner)
            if nested:
                refusal = f"s3://{location.root}/ holds other pipelines' lakes: {', '.join(nested)}"
        if refusal is not None:
            emit("Warning", "LakeDeleteRefused", f"deletionPolicy Delete: {refusal}; the lake is left in place")
            raise kopf.PermanentError(f"lake not deleted: {refusal}")
        removed = await asyncio.to_thread(lake_cleanup.delete_lake_prefix, connection, location)
    except kopf.PermanentError:
        raise
    except Exception as exc:
        delay = transient_delay(exc, retry_s) or retry_s
        emit("Warning", "LakeDeleteFailed", f"deletionPolicy Delete: {exc}{escape}; retrying in {delay:g}s")
        raise kopf.TemporaryError(f"lake not deleted yet: {exc}", delay=delay) from exc
    emit("Normal", "LakeDeleted", f"deletionPolicy Delete: removed {removed} objects under s3://{location.root}/")
