"""What a handler's error tells kopf, against the real kube-apiserver: a refusal no retry can change
(kopf.PermanentError) runs once and is not retried; what a retry can fix (kopf.TemporaryError) is
retried after its own delay: the API server's Retry-After, or the wait for a person to fix the sink
Secret. One operator process for the module (tests/support/operator_process.py), with a longer
wait for a fixed Secret than for the other retries so that the two can be told apart."""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.crd import CRD_PATH, load_crd
from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.s3server import S3Server
from tests.support.admission_webhook import AdmissionWebhook
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import CHILD_KINDS, events, get, items
from tests.support.local_services import register
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube

BUCKET = "lake"
SECRET = "lake-credentials"  # the base spec's credentialsSecretRef.name (default keys accessKey, secretKey)
MISCONFIG_RETRY_S = 3  # the retry of a lake deletion waiting for the Secret; the other retries: 1 s
RETRY_AFTER_S = 4  # what the API server tells the operator to wait, in the throttling test


@pytest.fixture(scope="module")
def operator(kube: KubeControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorProcess]:
    env = {"CRYPTOPIPE_OPERATOR_MISCONFIG_RETRY_S": str(MISCONFIG_RETRY_S)}
    operator = OperatorProcess(kube, tmp_path_factory.mktemp("operator-errors") / "operator.log", env=env)
    register("operator", operator)  # its log tail joins a failing test's report
    operator.start()
    try:
        yield operator
    finally:
        operator.stop()


def _create(kube: KubeControlPlane, body: dict[str, Any], *, check: bool = True) -> bool:
    return kube.kubectl("create", "-f", "-", input=json.dumps(body), check=check).returncode == 0


def _secret(kube: KubeControlPlane, s3: S3Server, ns: str, **keys: str) -> None:
    data = keys or {"accessKey": s3.access_key, "secretKey": s3.secret_key}
    kube.kubectl("create", "secret", "generic", SECRET, "-n", ns, *(f"--from-literal={k}={v}" for k, v in data.items()))


def _put(s3: S3Server, *keys: str) -> None:
    client = s3.boto3_client()
    for key in keys:
        client.put_object(Bucket=BUCKET, Key=key, Body=b"x")


def _keys(s3: S3Server, prefix: str) -> list[str]:
    pages = s3.boto3_client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


def _events(kube: KubeControlPlane, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    found = [e for e in events(kube, ns, name) if e["reason"] == reason]
    return sorted(found, key=lambda e: e["eventTime"] or e["firstTimestamp"])


def _handler_messages(operator: OperatorProcess, ns: str, name: str) -> list[str]:
    """What kopf logged about the object's handlers at WARNING and above: each failure, and what
    it makes of it ("failed permanently", "failed temporarily", "will try again"). kopf posts no
    Events of its own (settings.posting.loggers is off), so its log is where a failure's handling
    shows."""
    found = []
    for line in operator.log_path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        ref = record.get("k8s_ref") or {}
        if (ref.get("namespace"), ref.get("name")) == (ns, name) and record.get("level") in ("warning", "error"):
            found.append(record["msg"])
    return found


def _when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["eventTime"])


def _finalized(kube: KubeControlPlane, operator: OperatorProcess, ns: str, name: str) -> None:
    eventually(
        lambda: (get(kube, "CryptoPipeline", ns, name) or {"metadata": {}})["metadata"].get("finalizers"),
        "operator's finalizer",
        operator=operator,
    )


# --- permanent: refused once ----------------------------------------------------------------------


def _sink(s3: S3Server | None, prefix: str) -> dict[str, str]:
    return {"endpoint": s3.endpoint if s3 else "http://minio:9000", "bucket": BUCKET, "prefix": prefix}


def _loose_spec(ns: str, name: str, prefix: str, s3: S3Server | None = None) -> dict[str, Any]:
    """Passes the loosened CRD, not the chart's: one key named for both credentials (an invalid
    spec to the operator), and a prefix with a '..' segment (which would reach the bucket's root)."""
    body = pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, prefix))
    body["spec"]["sink"]["credentialsSecretRef"] |= {"accessKeyKey": "key", "secretKeyKey": "key"}
    return body


def _dry_run_accepted(kube: KubeControlPlane, body: dict[str, Any]) -> bool:
    result = kube.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(body), check=False)
    return result.returncode == 0


@pytest.fixture
def crd_before_tightening(kube: KubeControlPlane, kube_namespace: str, tmp_path: Path) -> Iterator[None]:
    """The CryptoPipeline CRD as an older chart could have shipped it: no pattern on spec.sink.prefix
    and no CEL rule keeping accessKeyKey and secretKeyKey apart. What is stored meanwhile reaches the
    operator as the API server kept it: the specs the operator's own checks exist for (spec.py's
    rules, lake_cleanup.checked_root). The chart's CRD is back afterwards, and in force."""
    crd = copy.deepcopy(load_crd())
    (version,) = crd["spec"]["versions"]
    sink = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["sink"]["properties"]
    del sink["prefix"]["pattern"]
    del sink["credentialsSecretRef"]["x-kubernetes-validations"]
    loose = tmp_path / "crd-before-tightening.json"
    loose.write_text(json.dumps(crd))
    probe = _loose_spec(kube_namespace, "probe", "p/..")
    assert not _dry_run_accepted(kube, probe), "the chart's CRD refuses the probe"
    kube.install_crds([loose])
    try:
        eventually(lambda: _dry_run_accepted(kube, probe), "loosened CRD in force")
        yield
    finally:
        kube.install_crds([CRD_PATH])
        eventually(lambda: not _dry_run_accepted(kube, probe), "chart's CRD back in force")


def _gone(kube: KubeControlPlane, operator: OperatorProcess, ns: str, name: str) -> None:
    eventually(lambda: get(kube, "CryptoPipeline", ns, name) is None, "pipeline gone", timeout=30, operator=operator)


def _one_refusal(kube: KubeControlPlane, operator: OperatorProcess, ns: str, name: str) -> dict[str, Any]:
    def refused() -> dict[str, Any]:
        (event,) = _events(kube, ns, name, "LakeDeleteRefused")
        return event

    event = eventually(refused, "LakeDeleteRefused", operator=operator)
    assert event["type"] == "Warning" and "the lake is left in place" in event["message"], event
    time.sleep(2)  # two retry backoffs: a retried handler would have posted again by now
    assert len(_events(kube, ns, name, "LakeDeleteRefused")) == 1
    assert not _events(kube, ns, name, "LakeDeleteFailed"), "refused, not retried"
    assert any("delete_lake" in m and "failed permanently" in m for m in _handler_messages(operator, ns, name))
    return event


def test_invalid_spec_is_refused_once_and_its_lake_left(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server, crd_before_tightening: None
) -> None:
    """A spec the operator's rules refuse (stored before the CRD checked them): status Invalid, one
    InvalidSpec Warning, nothing applied, and the handler failed permanently: not run again. Deleted
    with deletionPolicy Delete, the lake's location comes from that same spec: the deletion is
    refused once (LakeDeleteRefused), the lake is left, and the pipeline goes. (Before: the
    deletion failed and was retried every second, the finalizer holding the pipeline for ever.)"""
    ns, name, prefix = kube_namespace, "invalid", f"inv-{uuid.uuid4().hex[:8]}"
    lake = [f"{prefix}/candles/window=1m/a.parquet", f"{prefix}/_checkpoints/gen-1/window=1m/metadata"]
    _put(s3, *lake)
    _secret(kube, s3, ns)
    assert _create(kube, _loose_spec(ns, name, prefix, s3))

    def invalid() -> dict[str, Any]:
        st = (get(kube, "CryptoPipeline", ns, name) or {}).get("status") or {}
        assert st.get("phase") == "Invalid", st
        return st

    st = eventually(invalid, "status Invalid", operator=operator)
    assert "accessKeyKey and secretKeyKey must name different keys" in json.dumps(st), st
    eventually(
        lambda: any("apply_pipeline" in m and "failed permanently" in m for m in _handler_messages(operator, ns, name)),
        "kopf: apply_pipeline failed permanently",
        operator=operator,
    )
    time.sleep(3)  # three retry backoffs: a retried handler would have run again by now
    (warning,) = _events(kube, ns, name, "InvalidSpec")
    assert warning["type"] == "Warning", warning
    runs = [m for m in _handler_messages(operator, ns, name) if "apply_pipeline" in m]
    assert len(runs) == 1 and "invalid spec, nothing applied" in runs[0], runs
    for kind in CHILD_KINDS:
        assert not items(kube, kind, ns, f"app.kubernetes.io/instance={name}"), kind

    _finalized(kube, operator, ns, name)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=false")
    _gone(kube, operator, ns, name)
    refusal = _one_refusal(kube, operator, ns, name)
    assert "invalid spec" in refusal["message"], refusal
    assert _keys(s3, f"{prefix}/") == sorted(lake)


def test_unsafe_prefix_deletion_is_refused_once_and_the_bucket_left(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server, crd_before_tightening: None
) -> None:
    """deletionPolicy Delete with a prefix that would reach the bucket's root ('x/..'): refused once
    before any S3 request, everything in the bucket left, the pipeline lets go. (Before: a Warning
    and a retry every second, for ever.)"""
    ns, name, base = kube_namespace, "unsafe", f"uns-{uuid.uuid4().hex[:8]}"
    kept = [f"{base}/candles/window=1m/a.parquet", f"{base}-other/candles/b.parquet"]
    _put(s3, *kept)
    _secret(kube, s3, ns)
    assert _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, f"{base}/..")))
    eventually(lambda: get(kube, "Deployment", ns, f"{name}-ingestion"), "children applied", operator=operator)
    _finalized(kube, operator, ns, name)

    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=false")
    _gone(kube, operator, ns, name)
    refusal = _one_refusal(kube, operator, ns, name)
    assert "'..' segment" in refusal["message"], refusal
    assert _keys(s3, base) == sorted(kept)


# --- temporary: retried after its delay -----------------------------------------------------------


def test_secret_lacking_a_key_is_retried_after_the_misconfig_delay(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    """The sink Secret lacks the secret key: a person must fix it, so the lake deletion is retried
    after misconfig_retry_s (3 s here), not the 1 s backoff of the other retries, with a Warning
    each time; once the Secret is fixed, the next retry removes the lake and the pipeline goes."""
    ns, name, prefix = kube_namespace, "nokey", f"nok-{uuid.uuid4().hex[:8]}"
    lake = [f"{prefix}/candles/window=1m/a.parquet", f"{prefix}/_checkpoints/gen-1/window=1m/metadata"]
    _put(s3, *lake)
    _secret(kube, s3, ns, accessKey=s3.access_key)  # no secretKey
    assert _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=_sink(s3, prefix)))
    # the ownership marker a reconcile wrote while the Secret was whole (docs/operator.md)
    created = get(kube, "CryptoPipeline", ns, name)
    assert created is not None
    marker = {"namespace": ns, "name": name, "uid": created["metadata"]["uid"]}
    s3.boto3_client().put_object(
        Bucket=BUCKET, Key=f"{prefix}/_cryptopipe_owner.json", Body=json.dumps(marker).encode()
    )
    lake.append(f"{prefix}/_cryptopipe_owner.json")
    _finalized(kube, operator, ns, name)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=false")

    def failed_twice() -> list[dict[str, Any]]:
        found = _events(kube, ns, name, "LakeDeleteFailed")
        assert len(found) >= 2, found
        return found

    first, second = eventually(failed_twice, "two LakeDeleteFailed", timeout=30, operator=operator)[:2]
    gap = (_when(second) - _when(first)).total_seconds()
    assert gap >= MISCONFIG_RETRY_S - 0.5, f"retried after {gap:.1f}s, not after {MISCONFIG_RETRY_S}s"
    assert first["type"] == "Warning", first
    assert "has no key 'secretKey'" in first["message"], first["message"]
    assert f"retrying in {MISCONFIG_RETRY_S}s" in first["message"], first["message"]
    assert get(kube, "CryptoPipeline", ns, name) is not None, "the finalizer keeps it while the lake is there"
    assert _keys(s3, f"{prefix}/") == sorted(lake)

    kube.kubectl("delete", "secret", SECRET, "-n", ns)
    _secret(kube, s3, ns)
    _gone(kube, operator, ns, name)
    assert _keys(s3, f"{prefix}/") == []
    assert not _events(kube, ns, name, "LakeDeleteRefused")


class _ThrottlingWebhook(AdmissionWebhook):
    """The first review of Deployment ``target`` is denied with 429 Too Many Requests and
    Status.details.retryAfterSeconds, which the API server returns to its client with a
    Retry-After header; later reviews are allowed. A Deployment named ``probe`` is always denied
    (to tell when the webhook is in force). Records when each review of ``target`` arrived."""

    def __init__(self, workdir: Path, target: str) -> None:
        self.target = target
        self.reviews: list[float] = []
        super().__init__(workdir, self._review)

    def _review(self, request: dict[str, Any]) -> dict[str, Any]:
        if request["name"] == "probe":
            return {"allowed": False, "status": {"code": 403, "message": "probe denied"}}
        if request["name"] == self.target:
            self.reviews.append(time.monotonic())
            if len(self.reviews) == 1:
                details = {"retryAfterSeconds": RETRY_AFTER_S}
                status = {"code": 429, "reason": "TooManyRequests", "message": "slow down", "details": details}
                return {"allowed": False, "status": status}
        return {"allowed": True}

    def deployments(self, namespace: str) -> dict[str, Any]:
        rule = {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"]}
        return self.configuration(f"throttle-{namespace}", namespace, rule | {"resources": ["deployments"]})


def test_api_throttling_is_retried_after_the_servers_retry_after(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, tmp_path: Path
) -> None:
    """The API server answers the ingestion Deployment's apply with 429 and Retry-After (through an
    admission webhook): the reconcile fails temporarily and is retried after the server's 4 s, not
    after the 1 s backoff, then converges."""
    ns, name = kube_namespace, "throttled"
    with _ThrottlingWebhook(tmp_path, target=f"{name}-ingestion") as hook:
        configuration = hook.deployments(ns)
        kube.apply(configuration)
        try:

            def in_force() -> bool:
                result = kube.kubectl(
                    "create", "deployment", "probe", "--image=x", "-n", ns, "--dry-run=server", check=False
                )
                assert "probe denied" in result.stderr, result.stderr
                return True

            eventually(in_force, "webhook in force")
            assert _create(kube, pipeline(name, ns))

            def converged() -> dict[str, Any]:
                st = (get(kube, "CryptoPipeline", ns, name) or {}).get("status") or {}
                assert st.get("observedGeneration") == 1, st
                # the throttled attempt is reported too (ReconcileFailed, same generation): not yet
                ready = next(c for c in st["conditions"] if c["type"] == "Ready")
                assert ready["reason"] != "ReconcileFailed", ready
                return st

            eventually(converged, "status after the retry", timeout=30, operator=operator)
        finally:
            kube.kubectl("delete", "validatingwebhookconfiguration", configuration["metadata"]["name"])
    assert len(hook.reviews) >= 2, hook.reviews
    gap = hook.reviews[1] - hook.reviews[0]
    assert gap >= RETRY_AFTER_S - 0.5, f"retried after {gap:.1f}s, not after the server's {RETRY_AFTER_S}s"
    temporary = [m for m in _handler_messages(operator, ns, name) if "failed temporarily" in m]
    assert temporary and "HTTP 429" in temporary[0] and f"retrying in {RETRY_AFTER_S}s" in temporary[0], temporary
