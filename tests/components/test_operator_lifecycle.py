"""The operator against a real kube-apiserver + controller-manager: create, readiness from the
children, updates and checkpoint generations, both deletion policies, a crash mid-create, and the
API server refusing invalid specs. One operator process for the module (tests/support/operator_process.py)."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane, KubectlError
from cryptopipe_dev.stack.s3server import S3Server
from tests.support.cryptopipelines import INVALID_SPECS, merge_patch, pipeline
from tests.support.kube_objects import CHILD_KINDS, conditions, events, get, items, mark_children_ready, patch_status
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube


def _create(kube: KubeControlPlane, body: dict[str, Any]) -> dict[str, Any]:
    kube.kubectl("create", "-f", "-", input=json.dumps(body))
    created = get(kube, "CryptoPipeline", body["metadata"]["namespace"], body["metadata"]["name"])
    assert created is not None
    return created


def _children(kube: KubeControlPlane, ns: str, name: str) -> dict[str, dict[str, Any] | None]:
    return {
        "topic": get(kube, "KafkaTopic", ns, f"{name}-trades"),
        "dlq": get(kube, "KafkaTopic", ns, f"{name}-trades-dlq"),
        "deployment": get(kube, "Deployment", ns, f"{name}-ingestion"),
        "spark": get(kube, "SparkApplication", ns, f"{name}-candles"),
    }


def _all_children(kube: KubeControlPlane, ns: str, name: str) -> dict[str, dict[str, Any]]:
    children = _children(kube, ns, name)
    assert all(children.values()), {k: v is not None for k, v in children.items()}
    return children  # type: ignore[return-value]


def _status(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    obj = get(kube, "CryptoPipeline", ns, name)
    assert obj is not None
    return obj


def _env(deployment: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


def scrape_samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample a /metrics endpoint serves."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=2) as response:
        text = response.read().decode()
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def test_create_reports_children_ready_then_spark_failure(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "btc"
    cr = _create(kube, pipeline(name, ns))
    children = eventually(lambda: _all_children(kube, ns, name), "children applied", operator=operator)
    for kind in CHILD_KINDS:  # every child, not only the four the status is about
        owned = items(kube, kind, ns, f"app.kubernetes.io/instance={name}")
        assert owned, kind
        for child in owned:
            (ref,) = child["metadata"]["ownerReferences"]
            assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
                "CryptoPipeline",
                name,
                cr["metadata"]["uid"],
                True,
            )
    # stored as rendered: nothing pruned by the upstream schemas (a pruned field would be missing)
    assert children["spark"]["spec"]["restartPolicy"]["type"] == "Always"
    assert children["topic"]["metadata"]["labels"]["strimzi.io/cluster"] == "lake-kafka"

    def reported() -> dict[str, Any]:
        obj = _status(kube, ns, name)
        st = obj["status"]
        assert set(conditions(obj)) == {"Ready", "TopicReady", "IngestionReady", "SparkReady"}, st
        assert st["observedGeneration"] == obj["metadata"]["generation"] and st["checkpointGeneration"] == 1
        return obj

    first = eventually(reported, "status with four conditions", operator=operator)
    assert conditions(first)["Ready"]["status"] != "True" and first["status"]["phase"] == "Pending"

    mark_children_ready(kube, ns, name)
    eventually(
        lambda: conditions(_status(kube, ns, name))["Ready"]["status"] == "True", "Ready True", operator=operator
    )
    assert _status(kube, ns, name)["status"]["phase"] == "Running"

    patch_status(
        kube,
        f"sparkapplication/{name}-candles",
        ns,
        {"applicationState": {"state": "FAILED", "errorMessage": "driver OOMKilled"}, "driverInfo": {}},
    )

    def spark_failed() -> dict[str, Any]:
        ready = conditions(_status(kube, ns, name))["Ready"]
        assert ready["status"] == "False", ready
        return ready

    ready = eventually(spark_failed, "Ready False after the Spark job failed", operator=operator)
    assert ready["reason"] == "SparkNotReady" and "SparkApplication btc-candles is FAILED" in ready["message"], ready
    assert _status(kube, ns, name)["status"]["phase"] == "Degraded"
    reasons = {e["reason"] for e in events(kube, ns, name)}
    assert {"ChildrenApplied", "AllChildrenReady", "SparkNotReady"} <= reasons, reasons

    # the same story on the operator's /metrics
    def metrics_say_spark_failed() -> dict[str, float]:
        samples = scrape_samples(f"http://127.0.0.1:{operator.metrics_port}/metrics")
        condition = {
            labels["type"]: value
            for metric, labels, value in samples
            if metric == "cryptopipe_operator_pipeline_condition" and labels["pipeline"] == name
        }
        assert condition == {"Ready": 0, "TopicReady": 1, "IngestionReady": 1, "SparkReady": 0}, condition
        applied = sum(
            value
            for metric, labels, value in samples
            if metric == "cryptopipe_operator_reconciles_total" and labels["result"] == "applied"
        )
        assert applied >= 1
        return condition

    eventually(metrics_say_spark_failed, "metrics show the failure", operator=operator)


def test_products_update_in_place_windows_bump_checkpoint(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "eth"
    _create(kube, pipeline(name, ns))
    eventually(
        lambda: (_status(kube, ns, name).get("status") or {}).get("checkpointGeneration") == 1,
        "first status",
        operator=operator,
    )
    before = _all_children(kube, ns, name)
    path_1 = _status(kube, ns, name)["status"]["checkpointPath"]

    kube.kubectl(
        "patch",
        f"cryptopipeline/{name}",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"products": ["BTC-USD", "ETH-USD", "SOL-USD"]}}),
    )

    def products_applied() -> dict[str, Any]:
        children = _all_children(kube, ns, name)
        assert _env(children["deployment"]) != _env(before["deployment"])
        assert _status(kube, ns, name)["status"]["observedGeneration"] == 2
        return children

    after = eventually(products_applied, "products applied", operator=operator)
    assert "SOL-USD" in json.dumps(_env(after["deployment"]))
    # the job candles whatever products arrive on the topic (it takes no product list), so its
    # SparkApplication is left as it was: no restart, same checkpoint
    assert after["spark"]["spec"] == before["spark"]["spec"]
    status = _status(kube, ns, name)["status"]
    assert (status["checkpointGeneration"], status["checkpointPath"]) == (1, path_1)

    kube.kubectl(
        "patch",
        f"cryptopipeline/{name}",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"windows": ["1m", "15m"]}}),
    )

    def bumped() -> dict[str, Any]:
        st = _status(kube, ns, name)["status"]
        assert st["observedGeneration"] == 3 and st["checkpointGeneration"] == 2, st
        return st

    st = eventually(bumped, "checkpoint generation bumped", operator=operator)
    assert st["checkpointPath"] != path_1 and st["checkpointPath"].endswith("2")
    args = _all_children(kube, ns, name)["spark"]["spec"]["arguments"]
    # the job derives its checkpoint path from bucket, prefix and generation (as status does)
    assert args[args.index("--checkpoint-generation") + 1] == "2" and args[args.index("--windows") + 1] == "1m,15m"
    assert "CheckpointGenerationBumped" in {e["reason"] for e in events(kube, ns, name)}


def test_delete_policy_delete_removes_children(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, s3: S3Server
) -> None:
    ns, name = kube_namespace, "gone"
    # Delete also removes the lake prefix (tests/components/test_operator_lake_deletion.py): a
    # reachable S3 and the sink Secret, or the finalizer keeps the pipeline
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "lake-credentials",
        "-n",
        ns,
        f"--from-literal=accessKey={s3.access_key}",
        f"--from-literal=secretKey={s3.secret_key}",
    )
    sink = {"endpoint": s3.endpoint, "bucket": "lake", "prefix": f"{ns}/{name}"}
    _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=sink))
    eventually(lambda: _all_children(kube, ns, name), "children applied", operator=operator)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=30)

    def all_gone() -> bool:
        left = {kind: items(kube, kind, ns, f"app.kubernetes.io/instance={name}") for kind in CHILD_KINDS}
        assert not any(left.values()), {k: [o["metadata"]["name"] for o in v] for k, v in left.items() if v}
        return True

    eventually(all_gone, "children garbage-collected", timeout=30, operator=operator)


def test_delete_policy_retain_keeps_topics_unmanaged(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "kept"
    _create(kube, pipeline(name, ns, deletionPolicy="Retain"))
    eventually(lambda: _all_children(kube, ns, name), "children applied", operator=operator)
    eventually(lambda: _status(kube, ns, name)["metadata"].get("finalizers"), "Retain finalizer", operator=operator)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=30)
    assert get(kube, "CryptoPipeline", ns, name) is None

    def others_gone() -> bool:
        assert get(kube, "Deployment", ns, f"{name}-ingestion") is None
        assert get(kube, "SparkApplication", ns, f"{name}-candles") is None
        return True

    eventually(others_gone, "Deployment and SparkApplication garbage-collected", timeout=30, operator=operator)
    for topic_name in (f"{name}-trades", f"{name}-trades-dlq", f"{name}-ingest-state"):
        topic = get(kube, "KafkaTopic", ns, topic_name)
        assert topic is not None, f"{topic_name} was deleted"
        assert not topic["metadata"].get("ownerReferences"), topic["metadata"]
        assert topic["metadata"]["annotations"]["strimzi.io/managed"] == "false"


def test_operator_killed_mid_create_converges(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    ns, name = kube_namespace, "crash"
    _create(kube, pipeline(name, ns))
    # SIGKILL as soon as the first child shows up: the rest of the set, and status, are not written
    eventually(lambda: get(kube, "KafkaTopic", ns, f"{name}-trades"), "first child", timeout=20, operator=operator)
    operator.kill9()
    partial = {kind: len(items(kube, kind, ns, f"app.kubernetes.io/instance={name}")) for kind in CHILD_KINDS}
    operator.start()

    def converged() -> dict[str, Any]:
        obj = _status(kube, ns, name)
        st = obj.get("status") or {}
        assert st.get("observedGeneration") == 1 and st.get("checkpointGeneration") == 1, st
        assert len(conditions(obj)) == 4
        return obj

    eventually(converged, "converged after restart", operator=operator)
    counts = {kind: len(items(kube, kind, ns, f"app.kubernetes.io/instance={name}")) for kind in CHILD_KINDS}
    # one of each (three topics), whatever the crash left behind: server-side apply by name
    assert counts == {
        "KafkaTopic": 3,
        "ServiceAccount": 1,
        "RoleBinding": 1,
        "Service": 1,
        "Deployment": 1,
        "SparkApplication": 1,
    }, (counts, partial)


CASES = INVALID_SPECS["cases"]


def test_invalid_specs_rejected_by_the_api_server(kube: KubeControlPlane, kube_namespace: str) -> None:
    """Every case the schema or CEL can check (all of them): refused at the door, naming the field,
    so the operator never sees it. (No case needs code: status.InvalidSpec is the fallback for a
    spec stored before the CRD tightened, covered in tests/unit/test_operator_status.py.)"""
    ns = kube_namespace
    failures = []
    for index, case in enumerate(CASES):
        name = f"invalid-{index}"
        if case["rejectedBy"] == "transition":
            body = pipeline(name, ns)
            body["spec"] = merge_patch(body["spec"], case["old"])
            kube.kubectl("create", "-f", "-", input=json.dumps(body))
            result = kube.kubectl(
                "patch",
                f"cryptopipeline/{name}",
                "-n",
                ns,
                "--type=merge",
                "-p",
                json.dumps({"spec": case["patch"]}),
                check=False,
            )
        else:
            body = pipeline(name, ns)
            body["spec"] = merge_patch(body["spec"], case["patch"])
            result = kube.kubectl("create", "-f", "-", input=json.dumps(body), check=False)
        if result.returncode == 0:
            failures.append(f"{case['name']}: accepted")
        elif case["field"] not in result.stderr:
            failures.append(f"{case['name']}: message does not name {case['field']}: {result.stderr.strip()}")
    assert not failures, "\n".join(failures)
    assert len(CASES) >= 20


def test_invalid_specs_never_reach_children(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str
) -> None:
    with pytest.raises(KubectlError):
        _create(kube, pipeline("nope", kube_namespace, windows=["1m", "7m"]))
    time.sleep(1.5)  # more than a status interval: the operator had the chance to act
    for kind in CHILD_KINDS:
        assert not items(kube, kind, kube_namespace, "app.kubernetes.io/instance=nope"), kind
