"""deletionPolicy and the lake: Delete removes every object under the sink's prefix (candles and
checkpoints) and nothing outside it, Retain leaves it; a prefix that would reach the whole bucket
is refused before any request. The operator process against the real control plane and the
session's S3 server (versitygw)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.s3 import S3Connection
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.s3server import S3Server
from cryptopipe_operator.lake_cleanup import LakeCleanupError, delete_lake_prefix
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import events, get
from tests.support.operator_process import OperatorProcess, eventually

BUCKET = "lake"
SECRET = "lake-credentials"  # the base spec's credentialsSecretRef.name (default keys accessKey, secretKey)


def _keys(s3: S3Server, prefix: str) -> list[str]:
    client = s3.boto3_client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _put(s3: S3Server, *keys: str) -> None:
    client = s3.boto3_client()
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")


def _lake_objects(prefix: str) -> list[str]:
    location = LakeLocation(BUCKET, prefix)
    files = [
        location.candle_file(window="1m", product_id=p, date=d, generation=1, batch_id=b)
        for p in ("BTC-USD", "ETH-USD")
        for d in ("2026-11-25", "2026-11-26")
        for b in (0, 1)
    ]
    files += [
        f"{location.checkpoint_root(g)}/window=1m/{part}"
        for g in (1, 2)
        for part in ("metadata", "offsets/0", "commits/0", "state/0/0/1.delta", "state/0/1/1.delta")
    ]
    return [f.removeprefix(f"{BUCKET}/") for f in files]


def _secret_and_pipeline(kube: KubeControlPlane, s3: S3Server, ns: str, name: str, prefix: str, policy: str) -> None:
    kube.kubectl(
        "create",
        "secret",
        "generic",
        SECRET,
        "-n",
        ns,
        f"--from-literal=accessKey={s3.access_key}",
        f"--from-literal=secretKey={s3.secret_key}",
    )
    body = pipeline(name, ns, deletionPolicy=policy, sink={"endpoint": s3.endpoint, "bucket": BUCKET, "prefix": prefix})
    kube.kubectl("create", "-f", "-", input=json.dumps(body))


MARKER = "_cryptopipe_owner.json"  # the ownership marker the reconcile writes (docs/operator.md)


def _marked(s3: S3Server, operator: OperatorProcess, prefix: str) -> str:
    """Wait for the reconcile's ownership marker; its key."""
    key = f"{prefix}/{MARKER}"
    eventually(lambda: key in _keys(s3, key), "ownership marker", operator=operator)
    return key


def _wait_for_finalizer(kube: KubeControlPlane, operator: OperatorProcess, ns: str, name: str) -> None:
    def finalized() -> Any:
        obj = get(kube, "CryptoPipeline", ns, name)
        assert obj is not None
        return obj["metadata"].get("finalizers")

    eventually(finalized, "operator's finalizer", operator=operator)


@pytest.mark.kube
def test_delete_policy_removes_the_lake_prefix_only(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    ns, name, prefix = kube_namespace, "wiped", f"del-{uuid.uuid4().hex[:8]}"
    mine = _lake_objects(prefix)
    # another pipeline's lake, one whose prefix starts with the same characters, and one nested
    # elsewhere: none of them is under prefix/
    others = [*_lake_objects(f"other-{prefix}"), f"{prefix}-sibling/candles/x.parquet", f"keep/{prefix}/y"]
    _put(s3, *mine, *others)
    _secret_and_pipeline(kube, s3, ns, name, prefix, "Delete")
    _wait_for_finalizer(kube, operator, ns, name)
    mine.append(_marked(s3, operator, prefix))

    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=60)
    assert get(kube, "CryptoPipeline", ns, name) is None
    assert _keys(s3, f"{prefix}/") == []
    assert _keys(s3, prefix) == sorted(k for k in others if k.startswith(prefix)), "only prefix/ was removed"
    for other in others:
        assert other in _keys(s3, other), f"{other} was deleted"

    def deleted_event() -> dict[str, Any]:
        (event,) = [e for e in events(kube, ns, name) if e["reason"] == "LakeDeleted"]
        return event

    event = eventually(deleted_event, "LakeDeleted event", operator=operator)
    assert event["type"] == "Normal"
    assert f"removed {len(mine)} objects under s3://{BUCKET}/{prefix}/" in event["message"], event["message"]


@pytest.mark.kube
def test_retain_policy_leaves_the_lake(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    ns, name, prefix = kube_namespace, "kept-lake", f"ret-{uuid.uuid4().hex[:8]}"
    mine = _lake_objects(prefix)
    _put(s3, *mine)
    _secret_and_pipeline(kube, s3, ns, name, prefix, "Retain")
    _wait_for_finalizer(kube, operator, ns, name)
    mine.append(_marked(s3, operator, prefix))  # kept with the lake: the folder stays claimed

    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=60)
    assert get(kube, "CryptoPipeline", ns, name) is None
    assert _keys(s3, f"{prefix}/") == sorted(mine)
    assert not [e for e in events(kube, ns, name) if e["reason"].startswith("Lake")]


@pytest.mark.kube
def test_delete_without_credentials_warns_and_keeps_the_pipeline(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    ns, name, prefix = kube_namespace, "no-secret", f"nos-{uuid.uuid4().hex[:8]}"
    mine = _lake_objects(prefix)[:3]
    _put(s3, *mine)
    body = pipeline(
        name, ns, deletionPolicy="Delete", sink={"endpoint": s3.endpoint, "bucket": BUCKET, "prefix": prefix}
    )
    kube.kubectl("create", "-f", "-", input=json.dumps(body))
    created = get(kube, "CryptoPipeline", ns, name)
    assert created is not None
    # the marker a reconcile wrote while the Secret was still there
    marker = {"namespace": ns, "name": name, "uid": created["metadata"]["uid"]}
    s3.boto3_client().put_object(Bucket=BUCKET, Key=f"{prefix}/{MARKER}", Body=json.dumps(marker).encode())
    mine.append(f"{prefix}/{MARKER}")
    _wait_for_finalizer(kube, operator, ns, name)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=false")

    def warned() -> dict[str, Any]:
        found = [e for e in events(kube, ns, name) if e["reason"] == "LakeDeleteFailed"]
        assert found
        return found[0]

    warning = eventually(warned, "LakeDeleteFailed warning", operator=operator)
    assert warning["type"] == "Warning" and f"Secret {ns}/{SECRET} not found" in warning["message"], warning
    assert get(kube, "CryptoPipeline", ns, name) is not None, "the finalizer keeps it while the lake is there"
    assert _keys(s3, f"{prefix}/") == sorted(mine)

    # the Secret appears: the next retry (kopf's backoff) removes the lake and lets the pipeline go
    kube.kubectl(
        "create",
        "secret",
        "generic",
        SECRET,
        "-n",
        ns,
        f"--from-literal=accessKey={s3.access_key}",
        f"--from-literal=secretKey={s3.secret_key}",
    )
    eventually(
        lambda: get(kube, "CryptoPipeline", ns, name) is None,
        "pipeline gone after retry",
        timeout=30,
        operator=operator,
    )
    assert _keys(s3, f"{prefix}/") == []


# --- lake_cleanup alone (no CR) --------------------------------------------------------------------


class _NoRequests:
    """A filesystem that fails the test on any call: a refused prefix must not reach S3."""

    def __getattr__(self, name: str) -> Any:
        pytest.fail(f"S3 called ({name}) for a refused prefix")


@pytest.mark.parametrize("prefix", ["", "/", "//", "a//b", "a/../b", "./x", ".."])
def test_unsafe_prefix_is_refused_before_any_request(prefix: str) -> None:
    connection = S3Connection("http://127.0.0.1:1", "k", "s")
    with pytest.raises(LakeCleanupError, match="refusing to delete lake data"):
        delete_lake_prefix(connection, LakeLocation(BUCKET, prefix), filesystem=_NoRequests())


def test_empty_prefix_error_names_the_bucket() -> None:
    with pytest.raises(LakeCleanupError, match="wipe the whole bucket 'lake'"):
        delete_lake_prefix(S3Connection(None, "k", "s"), LakeLocation(BUCKET, ""), filesystem=_NoRequests())


@pytest.mark.components
def test_delete_is_idempotent_and_deep(s3: S3Server) -> None:
    """Many objects (more than one DeleteObjects batch), deep checkpoint folders; a second run
    finds nothing and counts 0."""
    prefix = f"deep-{uuid.uuid4().hex[:8]}"
    keys = [f"{prefix}/candles/window=1m/product_id=BTC-USD/date=2026-11-26/part-{i:05d}.parquet" for i in range(1100)]
    keys += [f"{prefix}/_checkpoints/gen-1/window=1m/state/0/{i % 7}/{i}.delta" for i in range(30)]
    _put(s3, *keys, f"{prefix}x/keep")
    location = LakeLocation(BUCKET, prefix)
    assert delete_lake_prefix(s3.connection, location) == len(keys)
    assert _keys(s3, f"{prefix}/") == [] and _keys(s3, f"{prefix}x/") == [f"{prefix}x/keep"]
    assert delete_lake_prefix(s3.connection, location) == 0
