"""A failed reconcile's backoff and message (retry_policy.py), drift detection (drift.py) and the
per-object lock (object_locks.py)."""

from __future__ import annotations

import asyncio
import json

import pytest

from cryptopipe_operator.drift import drifted
from cryptopipe_operator.kube_api import ApiError
from cryptopipe_operator.object_locks import ObjectLocks
from cryptopipe_operator.render import render_children
from cryptopipe_operator.retry_policy import StepFailed, backoff_delay, describe, root_cause
from tests.unit.test_operator_status import pipeline

# -- backoff --------------------------------------------------------------------------------------------


def test_backoff_doubles_from_the_base_up_to_the_cap() -> None:
    delays = [backoff_delay(retry, base=5, cap=300) for retry in range(9)]
    assert delays == [5, 10, 20, 40, 80, 160, 300, 300, 300]


def test_backoff_never_overflows() -> None:
    assert backoff_delay(10_000, base=5, cap=300) == 300


def test_server_retry_after_is_never_cut_short() -> None:
    assert backoff_delay(0, base=1, cap=8, retry_after=4) == 4
    assert backoff_delay(4, base=1, cap=8, retry_after=4) == 8  # the backoff, once it is longer
    assert backoff_delay(9, base=1, cap=8, retry_after=30) == 30  # even beyond the cap


# -- the failure's message --------------------------------------------------------------------------


def quota_refusal() -> ApiError:
    status = {
        "kind": "Status",
        "status": "Failure",
        "message": 'deployments.apps "btc-ingestion" is forbidden: exceeded quota: no-deployments',
        "reason": "Forbidden",
        "code": 403,
    }
    return ApiError("PATCH", "/apis/apps/v1/namespaces/data/deployments/btc-ingestion", 403, json.dumps(status))


def test_a_refused_child_is_named_with_the_servers_message() -> None:
    failure = StepFailed("applying Deployment/btc-ingestion", quota_refusal())
    assert describe(failure) == (
        'applying Deployment/btc-ingestion: HTTP 403: deployments.apps "btc-ingestion" is forbidden: '
        "exceeded quota: no-deployments"
    )
    assert isinstance(root_cause(failure), ApiError) and root_cause(failure).status == 403


def test_other_failures_say_what_they_are() -> None:
    assert describe(ApiError("GET", "/x", 503, "upstream connect error")) == "HTTP 503: upstream connect error"
    assert describe(KeyError("spec")) == "KeyError: 'spec'"
    assert describe(TimeoutError()) == "TimeoutError"
    plain = ValueError("x")
    assert root_cause(plain) is plain


# -- drift ------------------------------------------------------------------------------------------


def children() -> dict[str, dict]:
    return {m["kind"] + "/" + m["metadata"]["name"]: m for m in render_children(pipeline(), 1)}


def as_stored(manifest: dict) -> dict:
    """The child as the API server returns it: the operator's fields plus the server's own."""
    live = json.loads(json.dumps(manifest))
    live["metadata"] |= {"uid": "u-1", "resourceVersion": "42", "generation": 3, "managedFields": [{"manager": "x"}]}
    live["metadata"]["annotations"] = {**live["metadata"].get("annotations", {}), "deployment.kubernetes.io/rev": "2"}
    live["status"] = {"observedGeneration": 3}
    if live["kind"] == "Deployment":
        live["spec"]["progressDeadlineSeconds"] = 600  # a server default
    return live


def test_a_child_as_applied_has_not_drifted() -> None:
    for ref, manifest in children().items():
        assert not drifted(manifest, as_stored(manifest)), ref


def test_a_deleted_child_has_drifted() -> None:
    assert drifted(children()["Deployment/btc-ingestion"], None)


def test_a_changed_image_has_drifted() -> None:
    manifest = children()["Deployment/btc-ingestion"]
    live = as_stored(manifest)
    live["spec"]["template"]["spec"]["containers"][0]["image"] = "someone/else:latest"
    assert drifted(manifest, live)


@pytest.mark.parametrize("field", ["labels", "ownerReferences"])
def test_changed_metadata_the_operator_renders_has_drifted(field: str) -> None:
    manifest = children()["KafkaTopic/btc-trades"]
    live = as_stored(manifest)
    live["metadata"][field] = {} if field == "labels" else []
    assert drifted(manifest, live)


def test_a_changed_topic_setting_has_drifted() -> None:
    manifest = children()["KafkaTopic/btc-trades"]
    live = as_stored(manifest)
    live["spec"]["config"]["retention.ms"] = 1
    assert drifted(manifest, live)


# -- one lock per object ----------------------------------------------------------------------------


def test_holders_of_one_object_take_turns_and_others_do_not_wait() -> None:
    locks = ObjectLocks()
    trace: list[str] = []

    async def hold(key: str, name: str, pause: float) -> None:
        async with locks.hold(key):
            trace.append(f"{name} in")
            await asyncio.sleep(pause)
            trace.append(f"{name} out")

    async def main() -> None:
        first = asyncio.create_task(hold("a", "a1", 0.05))
        await asyncio.sleep(0)  # a1 holds "a"
        await asyncio.gather(hold("a", "a2", 0), hold("b", "b1", 0), first)

    asyncio.run(main())
    assert trace.index("a2 in") > trace.index("a1 out")  # serialized
    assert trace.index("b1 out") < trace.index("a1 out")  # another object's holder did not wait
    assert len(locks) == 0  # no lock kept for objects no one holds
