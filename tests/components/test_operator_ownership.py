"""Data that is not the pipeline's own is never touched (issue 11, points 1-3): each pipeline's own
lake space by default and overlapping spaces refused; an ownership marker in the lake, and Delete
removing only a prefix marked as the pipeline's; no takeover of an existing object with a child's
name; Delete stopping the writers before the lake goes; a namespace deletion that took the sink
Secret first finishing instead of retrying forever. The operator process against the real control
plane and the session's S3 server (versitygw)."""

from __future__ import annotations

import copy
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.crd import CRD_PATH, load_crd
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.s3server import S3Server
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import conditions, events, get
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube

BUCKET = "lake"
SECRET = "lake-credentials"
MARKER = "_cryptopipe_owner.json"


def _create(kube: KubeControlPlane, body: dict[str, Any]) -> str:
    kube.kubectl("create", "-f", "-", input=json.dumps(body))
    created = get(kube, "CryptoPipeline", body["metadata"]["namespace"], body["metadata"]["name"])
    assert created is not None
    return str(created["metadata"]["uid"])


def _secret(kube: KubeControlPlane, s3: S3Server, ns: str) -> None:
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


def _sink(s3: S3Server, prefix: str | None = None) -> dict[str, Any]:
    sink: dict[str, Any] = {"endpoint": s3.endpoint, "bucket": BUCKET}
    if prefix is not None:
        sink["prefix"] = prefix
    return sink


def _put(s3: S3Server, *keys: str, body: bytes = b"x") -> None:
    client = s3.boto3_client()
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=body)


def _put_marker(s3: S3Server, prefix: str, namespace: str, name: str, uid: str) -> None:
    body = json.dumps({"namespace": namespace, "name": name, "uid": uid}).encode()
    _put(s3, f"{prefix}/{MARKER}", body=body)


def _marker(s3: S3Server, prefix: str) -> dict[str, Any] | None:
    client = s3.boto3_client()
    try:
        found = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{MARKER}")
    except client.exceptions.NoSuchKey:
        return None
    return dict(json.loads(found["Body"].read()))


def _keys(s3: S3Server, prefix: str) -> list[str]:
    pages = s3.boto3_client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _lake(prefix: str) -> list[str]:
    return [
        f"{prefix}/candles/window=1m/product_id=BTC-USD/date=2026-11-26/part-g0001-b0000000000.parquet",
        f"{prefix}/_checkpoints/gen-1/window=1m/offsets/0",
        f"{prefix}/_checkpoints/gen-1/window=1m/commits/0",
    ]


def _ready(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    obj = get(kube, "CryptoPipeline", ns, name)
    assert obj is not None
    return conditions(obj).get("Ready") or {}


def _event(kube: KubeControlPlane, ns: str, name: str, reason: str) -> dict[str, Any]:
    found = [e for e in events(kube, ns, name) if e["reason"] == reason]
    assert found, reason
    return found[0]


def _no_children(kube: KubeControlPlane, ns: str, name: str) -> None:
    assert get(kube, "KafkaTopic", ns, f"{name}-trades") is None
    assert get(kube, "Deployment", ns, f"{name}-ingestion") is None
    assert get(kube, "SparkApplication", ns, f"{name}-candles") is None


def _finalized(kube: KubeControlPlane, operator: OperatorProcess, ns: str, name: str) -> None:
    eventually(
        lambda: (get(kube, "CryptoPipeline", ns, name) or {"metadata": {}})["metadata"].get("finalizers"),
        "operator's finalizer",
        operator=operator,
    )


# --- 1. lake space per pipeline --------------------------------------------------------------------


def test_default_prefix_is_the_pipelines_own(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    """Two pipelines that keep the default prefix get two spaces (namespace and name in each), and
    both run: no LakeConflict between them."""
    ns = kube_namespace
    for name in ("alpha", "beta"):
        _create(kube, pipeline(name, ns))

    def paths() -> dict[str, str]:
        found = {}
        for name in ("alpha", "beta"):
            obj = get(kube, "CryptoPipeline", ns, name)
            assert obj is not None and (obj.get("status") or {}).get("checkpointPath"), name
            found[name] = obj["status"]["checkpointPath"]
        return found

    found = eventually(paths, "both pipelines' checkpoint paths", operator=operator)
    assert found == {
        "alpha": f"s3a://lake/cryptopipelines/{ns}/alpha/_checkpoints/gen-1",
        "beta": f"s3a://lake/cryptopipelines/{ns}/beta/_checkpoints/gen-1",
    }
    app = get(kube, "SparkApplication", ns, "alpha-candles")
    assert app is not None
    args = app["spec"]["arguments"]
    assert args[args.index("--prefix") + 1] == f"cryptopipelines/{ns}/alpha", args
    for name in ("alpha", "beta"):
        assert _ready(kube, ns, name).get("reason") != "LakeConflict"


@pytest.mark.parametrize("relation", ["equal", "nested", "enclosing"])
def test_overlapping_lake_space_is_refused_with_no_children(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, relation: str
) -> None:
    """A pipeline whose bucket/prefix equals, nests in or encloses an older pipeline's: Ready False
    LakeConflict naming the other, a Warning Event, and not one child; the older one is untouched.
    Once the older one is gone, the retry applies the younger's children."""
    ns, base = kube_namespace, f"shared-{uuid.uuid4().hex[:6]}"
    first_prefix, second_prefix = {
        "equal": (base, f"{base}/"),
        "nested": (base, f"{base}/sub"),
        "enclosing": (f"{base}/sub", base),
    }[relation]
    _create(kube, pipeline("first", ns, sink={"bucket": BUCKET, "prefix": first_prefix}))
    eventually(lambda: get(kube, "SparkApplication", ns, "first-candles"), "first's children", operator=operator)
    time.sleep(1.1)  # creationTimestamp has whole seconds: the first is older
    _create(kube, pipeline("second", ns, sink={"bucket": BUCKET, "prefix": second_prefix.rstrip("/")}))

    def refused() -> dict[str, Any]:
        ready = _ready(kube, ns, "second")
        assert (ready.get("status"), ready.get("reason")) == ("False", "LakeConflict"), ready
        return ready

    ready = eventually(refused, "LakeConflict on the second pipeline", operator=operator)
    assert f"CryptoPipeline {ns}/first" in ready["message"], ready
    obj = get(kube, "CryptoPipeline", ns, "second")
    assert obj is not None and obj["status"]["phase"] == "Conflict"
    warning = eventually(lambda: _event(kube, ns, "second", "LakeConflict"), "LakeConflict event", operator=operator)
    assert warning["type"] == "Warning" and f"{ns}/first" in warning["message"], warning
    time.sleep(2)  # retries (every second here) still apply nothing and post no second Event
    _no_children(kube, ns, "second")
    assert len([e for e in events(kube, ns, "second") if e["reason"] == "LakeConflict"]) == 1
    assert _ready(kube, ns, "first").get("reason") != "LakeConflict"

    kube.kubectl("delete", "cryptopipeline/first", "-n", ns, "--wait=true", timeout=30)
    eventually(lambda: get(kube, "SparkApplication", ns, "second-candles"), "second's children", operator=operator)


def test_delete_refuses_a_prefix_marked_as_another_pipelines(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    """A prefix whose marker names another pipeline (one deleted with Retain, say): the pipeline
    pointed at it is refused (LakeConflict, no children), and its Delete leaves the lake."""
    ns, name, prefix = kube_namespace, "intruder", f"owned-{uuid.uuid4().hex[:8]}"
    theirs = _lake(prefix)
    _put(s3, *theirs)
    _put_marker(s3, prefix, "team-x", "original", "0000-uid-of-the-original")
    _secret(kube, s3, ns)
    _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, prefix)))

    def refused() -> dict[str, Any]:
        ready = _ready(kube, ns, name)
        assert ready.get("reason") == "LakeConflict", ready
        return ready

    ready = eventually(refused, "LakeConflict from the marker", operator=operator)
    assert "team-x/original" in ready["message"], ready
    _no_children(kube, ns, name)

    _finalized(kube, operator, ns, name)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=30)
    assert _keys(s3, f"{prefix}/") == sorted([*theirs, f"{prefix}/{MARKER}"])
    assert _marker(s3, prefix) == {"namespace": "team-x", "name": "original", "uid": "0000-uid-of-the-original"}
    refusal = _event(kube, ns, name, "LakeDeleteRefused")
    assert "team-x/original" in refusal["message"], refusal


def test_marker_claims_the_prefix_and_delete_leaves_a_nested_lake(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    """The first reconcile writes the marker (namespace, name, uid); a Delete whose prefix holds
    another pipeline's marked lake below it removes nothing."""
    ns, name, prefix = kube_namespace, "claims", f"claim-{uuid.uuid4().hex[:8]}"
    _secret(kube, s3, ns)
    uid = _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, prefix)))
    marker = eventually(lambda: _marker(s3, prefix), "ownership marker", operator=operator)
    assert marker == {"namespace": ns, "name": name, "uid": uid}

    mine, nested = _lake(prefix), _lake(f"{prefix}/retained")
    _put(s3, *mine, *nested)
    _put_marker(s3, f"{prefix}/retained", "team-y", "retained", "1111-uid")
    _finalized(kube, operator, ns, name)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=30)
    assert len(_keys(s3, f"{prefix}/")) == len(mine) + len(nested) + 2, "nothing removed"
    refusal = _event(kube, ns, name, "LakeDeleteRefused")
    assert "team-y/retained" in refusal["message"], refusal


def _defaulted_prefix(kube: KubeControlPlane, ns: str) -> str | None:
    """spec.sink.prefix as the API server's defaulting leaves it on a pipeline that does not set it."""
    probe = pipeline("probe", ns)
    out = kube.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(probe)).stdout
    prefix: str | None = json.loads(out)["spec"]["sink"].get("prefix")
    return prefix


def test_upgrade_keeps_the_stored_default_prefix_until_it_is_removed(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, tmp_path: Path
) -> None:
    """Pipelines created under the older CRD, which defaulted spec.sink.prefix to "cryptopipe",
    carry that prefix as stored: nothing moves by itself after the upgrade. Two of them share it, so
    the younger is refused (LakeConflict); removing the field gives it its own space
    (docs/operator.md, "Upgrading ...")."""
    ns = kube_namespace
    crd = copy.deepcopy(load_crd())
    (version,) = crd["spec"]["versions"]
    sink = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["sink"]["properties"]
    sink["prefix"]["default"] = "cryptopipe"
    older = tmp_path / "crd-with-prefix-default.json"
    older.write_text(json.dumps(crd))
    kube.install_crds([older])
    try:
        eventually(lambda: _defaulted_prefix(kube, ns) == "cryptopipe", "older CRD in force")
        _create(kube, pipeline("old-a", ns))
        time.sleep(1.1)  # creationTimestamp has whole seconds: old-a is older
        _create(kube, pipeline("old-b", ns))
    finally:
        kube.install_crds([CRD_PATH])
        eventually(lambda: _defaulted_prefix(kube, ns) is None, "chart's CRD back in force")

    stored = get(kube, "CryptoPipeline", ns, "old-b")
    assert stored is not None and stored["spec"]["sink"]["prefix"] == "cryptopipe", stored["spec"]["sink"]

    def a_runs_in_the_shared_folder() -> bool:
        obj = get(kube, "CryptoPipeline", ns, "old-a")
        assert obj is not None
        assert (obj.get("status") or {}).get("checkpointPath") == "s3a://lake/cryptopipe/_checkpoints/gen-1"
        return True

    eventually(a_runs_in_the_shared_folder, "old-a in cryptopipe/", operator=operator)
    ready = eventually(lambda: _ready(kube, ns, "old-b").get("reason") == "LakeConflict", "old-b refused")
    assert ready
    _no_children(kube, ns, "old-b")
    # a pipeline created after the upgrade gets a default space that does not nest in cryptopipe/
    _create(kube, pipeline("fresh", ns))
    eventually(lambda: get(kube, "SparkApplication", ns, "fresh-candles"), "fresh's children", operator=operator)

    patch = json.dumps([{"op": "remove", "path": "/spec/sink/prefix"}])
    kube.kubectl("patch", "cryptopipeline/old-b", "-n", ns, "--type=json", "-p", patch)

    def b_has_its_own_space() -> bool:
        obj = get(kube, "CryptoPipeline", ns, "old-b")
        assert obj is not None
        assert (obj.get("status") or {}).get(
            "checkpointPath"
        ) == f"s3a://lake/cryptopipelines/{ns}/old-b/_checkpoints/gen-1"
        return True

    eventually(b_has_its_own_space, "old-b in its own space", operator=operator)
    assert get(kube, "SparkApplication", ns, "old-b-candles") is not None


def _lists_of_pipelines(operator: OperatorProcess) -> float:
    found = operator.metric("cryptopipe_operator_api_requests_total", verb="list", resource="cryptopipelines")
    return found or 0.0


def test_the_overlap_check_lists_no_pipelines(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    """The lake-overlap check looks the other pipelines up in the operator's index (kopf's watch),
    not in a LIST of every CryptoPipeline per reconcile: a create and two prefix changes, each
    reconciled, send no LIST of CryptoPipelines (before: one per reconcile, which a burst of 100
    made quadratic)."""
    ns, name = kube_namespace, "indexed"
    lists_before = _lists_of_pipelines(operator)
    applied_before = operator.metric("cryptopipe_operator_reconciles_total", result="applied") or 0.0
    _create(kube, pipeline(name, ns))
    for round_ in range(3):

        def reconciled(round_: int = round_) -> bool:
            obj = get(kube, "CryptoPipeline", ns, name)
            assert obj is not None
            status = obj.get("status") or {}
            assert status.get("observedGeneration") == obj["metadata"]["generation"] == round_ + 1, status
            assert status.get("phase") != "Conflict", status
            return True

        eventually(reconciled, f"generation {round_ + 1} applied", operator=operator)
        if round_ < 2:
            patch = {"spec": {"sink": {"prefix": f"{ns}/{name}-{round_}"}}}
            kube.kubectl("patch", f"cryptopipeline/{name}", "-n", ns, "--type=merge", "-p", json.dumps(patch))

    def counted() -> bool:  # the metric follows the status write by a moment
        applied = operator.metric("cryptopipe_operator_reconciles_total", result="applied") or 0.0
        assert applied - applied_before >= 3, applied - applied_before
        return True

    eventually(counted, "three applied reconciles counted", operator=operator)
    assert _lists_of_pipelines(operator) == lists_before


# --- 2. no takeover of existing objects --------------------------------------------------------------


def test_existing_object_with_a_childs_name_is_not_taken_over(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    """Another team's KafkaTopic carries the name the pipeline's topic would have: it keeps its spec
    and gets no ownerReference; the pipeline is Ready False ChildConflict naming it, with a
    Warning Event, and nothing of it is applied. Once the topic is gone, the retry applies all."""
    ns, name = kube_namespace, "taken"
    theirs = {
        "apiVersion": "kafka.strimzi.io/v1",
        "kind": "KafkaTopic",
        "metadata": {"name": f"{name}-trades", "namespace": ns, "labels": {"strimzi.io/cluster": "lake-kafka"}},
        "spec": {"partitions": 12, "replicas": 1, "config": {"retention.ms": 86400000}},
    }
    kube.kubectl("create", "-f", "-", input=json.dumps(theirs))
    _create(kube, pipeline(name, ns))

    def refused() -> dict[str, Any]:
        ready = _ready(kube, ns, name)
        assert (ready.get("status"), ready.get("reason")) == ("False", "ChildConflict"), ready
        return ready

    ready = eventually(refused, "ChildConflict", operator=operator)
    assert f"KafkaTopic/{name}-trades" in ready["message"], ready
    warning = eventually(lambda: _event(kube, ns, name, "ChildConflict"), "ChildConflict event", operator=operator)
    assert warning["type"] == "Warning" and f"KafkaTopic/{name}-trades" in warning["message"], warning
    time.sleep(2)
    topic = get(kube, "KafkaTopic", ns, f"{name}-trades")
    assert topic is not None
    assert not topic["metadata"].get("ownerReferences"), topic["metadata"]
    assert topic["spec"] == theirs["spec"], topic["spec"]
    assert get(kube, "KafkaTopic", ns, f"{name}-trades-dlq") is None
    assert get(kube, "Deployment", ns, f"{name}-ingestion") is None

    kube.kubectl("delete", f"kafkatopic/{name}-trades", "-n", ns)
    eventually(
        lambda: get(kube, "SparkApplication", ns, f"{name}-candles"), "children after the retry", operator=operator
    )
    topic = get(kube, "KafkaTopic", ns, f"{name}-trades")
    assert topic is not None and topic["metadata"]["ownerReferences"][0]["name"] == name


# --- 3. delete in order -----------------------------------------------------------------------------


def test_delete_stops_the_writers_before_the_lake(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    """The SparkApplication and the ingestion Deployment are deleted, and gone, before any lake
    object is: a SparkApplication held by a finalizer (a driver still stopping) holds the lake."""
    ns, name, prefix = kube_namespace, "ordered", f"ord-{uuid.uuid4().hex[:8]}"
    _secret(kube, s3, ns)
    uid = _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, prefix)))
    _put_marker(s3, prefix, ns, name, uid)  # as the reconcile writes it (test_marker_claims_...)
    eventually(lambda: get(kube, "SparkApplication", ns, f"{name}-candles"), "children", operator=operator)
    _finalized(kube, operator, ns, name)
    mine = _lake(prefix)
    _put(s3, *mine)
    hold = "test.cryptopipeline.io/hold"
    kube.kubectl(
        "patch",
        f"sparkapplication/{name}-candles",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"metadata": {"finalizers": [hold]}}),
    )

    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=false")

    def stopping() -> bool:
        app = get(kube, "SparkApplication", ns, f"{name}-candles")
        assert app is not None and app["metadata"].get("deletionTimestamp"), "SparkApplication not being deleted"
        assert get(kube, "Deployment", ns, f"{name}-ingestion") is None, "Deployment not gone"
        return True

    eventually(stopping, "writers being stopped", operator=operator)
    time.sleep(3)  # several retries: the lake waits for the job
    assert len(_keys(s3, f"{prefix}/")) == len(mine) + 1, "lake touched while the Spark job was there"
    assert get(kube, "CryptoPipeline", ns, name) is not None
    event = _event(kube, ns, name, "StoppingWorkloads")
    assert f"SparkApplication/{name}-candles" in event["message"] and f"Deployment/{name}-ingestion" in event["message"]

    kube.kubectl(
        "patch", f"sparkapplication/{name}-candles", "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}'
    )
    eventually(lambda: get(kube, "CryptoPipeline", ns, name) is None, "pipeline gone", timeout=30, operator=operator)
    assert _keys(s3, f"{prefix}/") == []


def test_namespace_deletion_without_the_secret_finishes_and_leaves_the_lake(
    kube: KubeControlPlane, operator: OperatorProcess, s3: S3Server
) -> None:
    """The namespace is deleted after its sink Secret went: nobody can create the Secret again, so
    the lake deletion gives up (LakeDeleteAbandoned in the operator's log) and the namespace goes,
    the lake left in place, instead of Terminating forever."""
    ns, name, prefix = f"t-nsdel-{uuid.uuid4().hex[:6]}", "orphaned", f"nsd-{uuid.uuid4().hex[:8]}"
    kube.ensure_namespace(ns)
    try:
        _secret(kube, s3, ns)
        uid = _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, prefix)))
        _put_marker(s3, prefix, ns, name, uid)
        _finalized(kube, operator, ns, name)
        mine = _lake(prefix)
        _put(s3, *mine)
        kube.kubectl("delete", "secret", SECRET, "-n", ns)
        kube.kubectl("delete", "namespace", ns, "--wait=false")
        eventually(
            lambda: kube.kubectl("get", "namespace", ns, "--ignore-not-found", "-o", "name").stdout.strip() == "",
            "namespace gone",
            timeout=60,
            operator=operator,
        )
        assert len(_keys(s3, f"{prefix}/")) == len(mine) + 1
        assert "LakeDeleteAbandoned" in operator.log_path.read_text()
    finally:
        kube.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def test_skip_lake_cleanup_annotation_lets_the_deletion_finish(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    """The documented escape: with no Secret the deletion retries (LakeDeleteFailed names the
    annotation); cryptopipeline.io/skip-lake-cleanup=true lets it finish, the lake left."""
    ns, name, prefix = kube_namespace, "escape", f"esc-{uuid.uuid4().hex[:8]}"
    uid = _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, prefix)))
    mine = _lake(prefix)
    _put(s3, *mine)
    _put_marker(s3, prefix, ns, name, uid)
    _finalized(kube, operator, ns, name)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=false")
    failed = eventually(lambda: _event(kube, ns, name, "LakeDeleteFailed"), "LakeDeleteFailed", operator=operator)
    assert "cryptopipeline.io/skip-lake-cleanup" in failed["message"], failed
    kube.kubectl("annotate", f"cryptopipeline/{name}", "-n", ns, "cryptopipeline.io/skip-lake-cleanup=true")
    eventually(lambda: get(kube, "CryptoPipeline", ns, name) is None, "pipeline gone", timeout=30, operator=operator)
    assert len(_keys(s3, f"{prefix}/")) == len(mine) + 1
    assert _event(kube, ns, name, "LakeDeleteSkipped")["type"] == "Warning"
