"""Whether the operator may read a pipeline's sink Secret, asked before it is needed.

``deletionPolicy: Delete`` reads the sink Secret when the pipeline is deleted (deletion.py). The
chart's default RBAC lets the operator read no Secret (``rbac.readSinkSecrets: false``), and a
deletion would then wait with a Warning until someone enables it. Asked at apply time instead (a
SelfSubjectAccessReview, which every authenticated identity may create), the user learns it while
nothing is waiting on it. Never a GET of the Secret itself: that needs the very right in question.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import aiohttp

from cryptopipe_operator.kube_api import ApiError, Emit, KubeApi, object_path

log = logging.getLogger(__name__)

REVIEWS_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
REASON = "SinkSecretUnreadable"


async def may_read_secret(api: KubeApi, namespace: str, name: str) -> bool:
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": namespace, "verb": "get", "resource": "secrets", "name": name}},
    }
    result = await api.request("POST", REVIEWS_PATH, body=review)
    return bool(((result or {}).get("status") or {}).get("allowed"))


async def warn_if_delete_cannot_read_secret(api: KubeApi, body: Mapping[str, Any], emit: Emit) -> bool:
    """For a ``deletionPolicy: Delete`` pipeline whose sink Secret the operator may not read: a
    Warning saying what its deletion will need. Returns whether it warned. Best effort: a failed
    review is logged, never fails the reconcile."""
    spec = body.get("spec") or {}
    if spec.get("deletionPolicy") != "Delete":
        return False
    namespace = body["metadata"]["namespace"]
    secret = ((spec.get("sink") or {}).get("credentialsSecretRef") or {}).get("name")
    if not secret:
        return False
    try:
        if await may_read_secret(api, namespace, secret):
            return False
    except (ApiError, aiohttp.ClientError, TimeoutError) as exc:  # says nothing about the Secret
        log.warning("could not review access to Secret %s/%s: %s", namespace, secret, exc)
        return False
    emit(
        "Warning",
        REASON,
        f"deletionPolicy: Delete removes the lake with the credentials of Secret {secret}, which the operator "
        "may not read: its deletion would wait until the chart value rbac.readSinkSecrets=true is set "
        "(or spec.deletionPolicy is Retain)",
    )
    return True


async def read_sink_secret(api: KubeApi, namespace: str, name: str) -> dict[str, Any] | None:
    """The sink Secret, or None when it is missing or the operator's RBAC may not read it (the
    chart's default): the lake marker and generation records are then left to a later reconcile."""
    try:
        return await api.get(object_path("v1", "Secret", namespace, name))
    except ApiError as exc:
        if exc.status != 403:
            raise
        return None
