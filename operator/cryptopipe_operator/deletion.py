"""The deletion policies: what happens before a CryptoPipeline goes (its finalizer's handlers).

Retain takes the Kafka topics out of garbage collection and out of Strimzi's hands; Delete removes
the pipeline's lake prefix (lake_cleanup.py). Either way the other children go by garbage
collection.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any

import kopf

from cryptopipe_operator import lake_cleanup
from cryptopipe_operator.kube_api import ApiError, Emit, KubeApi, object_path, transient_delay
from cryptopipe_operator.render_kafka import STRIMZI_API_VERSION
from cryptopipe_operator.spec import SpecError, parse_pipeline

# Strimzi's (unidirectional) topic operator leaves the Kafka topic alone, and does not delete it
# with the KafkaTopic, when the KafkaTopic carries this annotation.
STRIMZI_MANAGED = "strimzi.io/managed"
# The chart's default RBAC reads no Secret (rbac.readSinkSecrets: false): a Delete pipeline's lake
# deletion is refused with 403, and says how to unblock it.
FORBIDDEN_SECRET_HINT = (
    " (the operator may not read the sink Secret: enable it with the chart value rbac.readSinkSecrets=true,"
    " or set spec.deletionPolicy: Retain to keep the lake and let the CryptoPipeline go)"
)


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


async def delete_lake(
    api: KubeApi, body: Mapping[str, Any], emit: Emit, *, retry_s: float, misconfig_retry_s: float
) -> None:
    """deletionPolicy Delete: remove the pipeline's lake prefix (candles and checkpoints) before the
    CryptoPipeline goes; the children go by garbage collection.

    What no retry can change is refused once, as kopf.PermanentError: a spec the operator cannot
    read (the lake's location is unknown) or a prefix that would reach beyond the pipeline's own
    lake. The Warning LakeDeleteRefused says the lake is left in place, and kopf lets the
    CryptoPipeline go (its finalizer's handler is done, failed): data left behind is the safe side,
    and a finalizer held forever would hold the namespace's deletion too.

    Anything else is a Warning LakeDeleteFailed and kopf.TemporaryError, retried without limit
    while the finalizer keeps the CryptoPipeline: after ``misconfig_retry_s`` when a person must fix
    the sink Secret (missing, lacking a key, not readable for RBAC), else after the API server's
    Retry-After or ``retry_s`` (S3 unreachable or not done, the API server failing).
    """
    try:
        pipeline = parse_pipeline(body)
        location = lake_cleanup.lake_location(pipeline)
        lake_cleanup.checked_root(location)  # refuse before reading any credentials
    except (SpecError, lake_cleanup.UnsafePrefix) as exc:
        reason = f"invalid spec ({exc})" if isinstance(exc, SpecError) else str(exc)
        emit("Warning", "LakeDeleteRefused", f"deletionPolicy Delete: {reason}; the lake is left in place")
        raise kopf.PermanentError(f"lake not deleted: {reason}") from exc
    try:
        ref = pipeline.spec.sink.credentials_secret_ref
        connection = lake_cleanup.sink_connection(pipeline, await get_secret(api, pipeline.namespace, ref.name))
        removed = await asyncio.to_thread(lake_cleanup.delete_lake_prefix, connection, location)
    except Exception as exc:
        forbidden = isinstance(exc, ApiError) and exc.status == 403
        if forbidden or isinstance(exc, lake_cleanup.SinkSecretUnusable):
            delay = misconfig_retry_s
        else:
            delay = transient_delay(exc, retry_s) or retry_s
        hint = FORBIDDEN_SECRET_HINT if forbidden else ""
        emit("Warning", "LakeDeleteFailed", f"deletionPolicy Delete: {exc}{hint}; retrying in {delay:g}s")
        raise kopf.TemporaryError(f"lake not deleted yet: {exc}{hint}", delay=delay) from exc
    emit("Normal", "LakeDeleted", f"deletionPolicy Delete: removed {removed} objects under s3://{location.root}/")
