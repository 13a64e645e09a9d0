"""The operator under churn and crashes, against the real kube-apiserver + controller-manager:
create/delete/create cycles of one name leave no orphan and exactly one set of children, and a
SIGKILL of the operator in the middle of an update or of a deletion converges after a restart.
One operator process for the module (tests/support/operator_process.py)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane
from cryptopipe_dev.stack.s3server import S3Server
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import CHILD_KINDS, conditions, get, items
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube

# one set of children: three topics (trades, DLQ, ingestion's resume points) and one of everything else
ONE_SET = {
    "KafkaTopic": 3,
    "ServiceAccount": 1,
    "RoleBinding": 1,
    "Service": 1,
    "Deployment": 1,
    "SparkApplication": 1,
}


@pytest.fixture
def sink(kube: KubeControlPlane, s3: S3Server, kube_namespace: str) -> dict[str, str]:
    """deletionPolicy Delete also removes the lake prefix, which needs the sink's Secret and a
    reachable S3 (else the finalizer rightly keeps the pipeline): the session's S3 server, a
    prefix of this namespace's own."""
    kube.kubectl(
        "create",
        "secret",
        "generic",
        "lake-credentials",
        "-n",
        kube_namespace,
        f"--from-literal=accessKey={s3.access_key}",
        f"--from-literal=secretKey={s3.secret_key}",
    )
    return {"endpoint": s3.endpoint, "bucket": "lake", "prefix": f"robustness/{kube_namespace}"}


def _create(kube: KubeControlPlane, body: dict[str, Any]) -> str:
    kube.kubectl("create", "-f", "-", input=json.dumps(body))
    created = get(kube, "CryptoPipeline", body["metadata"]["namespace"], body["metadata"]["name"])
    assert created is not None
    return created["metadata"]["uid"]


def _pipeline_refs(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("kind") == "CryptoPipeline"]


def _exactly_one_set(kube: KubeControlPlane, ns: str, name: str, uid: str) -> dict[str, int]:
    """Every child kind, found both ways (by the instance label, and every object in the namespace
    with a CryptoPipeline ownerReference): one set, all owned by the pipeline ``uid``, nothing else."""
    counts = {}
    for kind in CHILD_KINDS:
        labelled = items(kube, kind, ns, f"app.kubernetes.io/instance={name}")
        owned = [o for o in items(kube, kind, ns) if _pipeline_refs(o)]
        for obj in labelled + owned:
            refs = _pipeline_refs(obj)
            assert [(r["name"], r["uid"], r.get("controller")) for r in refs] == [(name, uid, True)], (
                kind,
                obj["metadata"]["name"],
                refs,
            )
        assert {o["metadata"]["uid"] for o in labelled} == {o["metadata"]["uid"] for o in owned}, kind
        counts[kind] = len(labelled)
    assert counts == ONE_SET, counts
    # what the controllers made from the Deployment: the current Deployment's, no stale ones
    (deployment,) = items(kube, "Deployment", ns, f"app.kubernetes.io/instance={name}")
    replicasets = kube.get_json("replicasets", "-n", ns)["items"]
    for rs in replicasets:
        assert [r["uid"] for r in rs["metadata"].get("ownerReferences") or []] == [deployment["metadata"]["uid"]], rs[
            "metadata"
        ]
    return counts


def _nothing_left(kube: KubeControlPlane, ns: str, name: str) -> bool:
    left = {
        kind: [
            o["metadata"]["name"]
            for o in items(kube, kind, ns)
            if _pipeline_refs(o) or o["metadata"].get("labels", {}).get("app.kubernetes.io/instance") == name
        ]
        for kind in CHILD_KINDS
    }
    left["ReplicaSet"] = [o["metadata"]["name"] for o in kube.get_json("replicasets", "-n", ns)["items"]]
    assert not any(left.values()), {k: v for k, v in left.items() if v}
    return True


def _status(kube: KubeControlPlane, ns: str, name: str) -> dict[str, Any]:
    obj = get(kube, "CryptoPipeline", ns, name)
    assert obj is not None
    return obj.get("status") or {}


def test_create_delete_cycles_leave_one_set_and_no_orphans(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, sink: dict[str, str]
) -> None:
    ns, name = kube_namespace, "churn"
    body = pipeline(name, ns, deletionPolicy="Delete", sink=sink)
    uid = ""
    for cycle in range(10):
        uid = _create(kube, body)
        # the whole set, owned by this incarnation (not the previous one's leftovers)
        eventually(
            lambda u=uid: _exactly_one_set(kube, ns, name, u),
            f"cycle {cycle}: children of the new pipeline",
            timeout=20,
            operator=operator,
        )
        if cycle == 9:
            break
        kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=30)
        assert get(kube, "CryptoPipeline", ns, name) is None
        # (no wait for garbage collection: the next create races the collector, as a user's would)
    eventually(
        lambda: (
            _status(kube, ns, name).get("observedGeneration") == 1
            and len(conditions(get(kube, "CryptoPipeline", ns, name) or {})) == 4
        ),
        "last pipeline's status",
        operator=operator,
    )
    # settled: several status intervals later the set is still exactly one, still the last uid's
    time.sleep(3)
    _exactly_one_set(kube, ns, name, uid)
    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=true", timeout=30)
    eventually(
        lambda: _nothing_left(kube, ns, name),
        "all children collected after the last delete",
        timeout=30,
        operator=operator,
    )


def _spark_args(kube: KubeControlPlane, ns: str, name: str) -> dict[str, str]:
    app = get(kube, "SparkApplication", ns, f"{name}-candles")
    assert app is not None
    args = app["spec"]["arguments"]
    return {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("--")}


@pytest.mark.parametrize("kill_after_s", [0.0, 0.05, 0.2])
def test_operator_killed_mid_update_converges(
    kube: KubeControlPlane,
    operator: OperatorProcess,
    kube_namespace: str,
    kill_after_s: float,
    sink: dict[str, str],
) -> None:
    """SIGKILL right after a state-breaking patch (at a few offsets, so some kills land before the
    operator saw it, some between the children and the status write): after a restart the update
    is applied exactly once, with one checkpoint generation more, never two."""
    ns, name = kube_namespace, "upd"
    uid = _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=sink))
    first = eventually(
        lambda: (
            (st := _status(kube, ns, name)).get("checkpointGeneration") == 1
            and st.get("observedGeneration") == 1
            and st
        ),
        "first status",
        operator=operator,
    )

    kube.kubectl(
        "patch",
        f"cryptopipeline/{name}",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"windows": ["1m", "15m"]}}),
    )
    time.sleep(kill_after_s)
    operator.kill9()
    operator.start()

    def updated() -> dict[str, Any]:
        obj = get(kube, "CryptoPipeline", ns, name) or {}
        st = obj.get("status") or {}
        assert st.get("observedGeneration") == 2 and st.get("checkpointGeneration") == 2, (st, obj["metadata"])
        args = _spark_args(kube, ns, name)
        assert args["--windows"] == "1m,15m" and args["--checkpoint-generation"] == "2", args
        return st

    st = eventually(updated, "update applied after the restart", timeout=30, operator=operator)
    assert st["checkpointPath"] != first["checkpointPath"] and st["checkpointPath"].endswith("2")
    assert len(conditions(get(kube, "CryptoPipeline", ns, name) or {})) == 4
    _exactly_one_set(kube, ns, name, uid)
    time.sleep(2)  # a replayed handler after the restart must not bump it a second time
    assert _status(kube, ns, name)["checkpointGeneration"] == 2


def _deny_status_writes(kube: KubeControlPlane, ns: str) -> str:
    """A ValidatingAdmissionPolicy that refuses every write to CryptoPipeline status in ``ns``: the
    operator's reconcile then applies the children and fails at its last step, the status write,
    and stays there (retrying) for as long as the test wants. Returns the policy's name."""
    name = f"deny-status-{ns}"[:63]
    kube.apply(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["cryptopipeline.io"],
                            "apiVersions": ["*"],
                            "operations": ["UPDATE"],
                            "resources": ["cryptopipelines/status"],
                        }
                    ]
                },
                "validations": [{"expression": "false", "message": "status writes paused by the test"}],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}},
            },
        },
    )
    return name


def test_operator_killed_between_children_and_status_converges(
    kube: KubeControlPlane, operator: OperatorProcess, kube_namespace: str, sink: dict[str, str]
) -> None:
    """The exact crash window of a state-breaking update: children applied with the new checkpoint
    generation, status not yet written. Held open deterministically (status writes refused by an
    admission policy), then SIGKILL, lift the policy, restart: the same generation (2) is recorded,
    not a third one, and the Spark job keeps the path it was already given."""
    ns, name = kube_namespace, "window"
    uid = _create(kube, pipeline(name, ns, deletionPolicy="Delete", sink=sink))
    eventually(lambda: _status(kube, ns, name).get("observedGeneration") == 1, "first status", operator=operator)
    policy = _deny_status_writes(kube, ns)
    try:
        # the policy is in force once a status write is refused (admission policies load asynchronously)
        def refused() -> bool:
            result = kube.kubectl(
                "patch",
                f"cryptopipeline/{name}",
                "-n",
                ns,
                "--subresource=status",
                "--type=merge",
                "-p",
                '{"status":{"phase":"Pending"}}',
                check=False,
            )
            assert result.returncode != 0, "status write still accepted"
            return True

        eventually(refused, "admission policy in force", timeout=20)
        kube.kubectl(
            "patch",
            f"cryptopipeline/{name}",
            "-n",
            ns,
            "--type=merge",
            "-p",
            json.dumps({"spec": {"windows": ["1m", "1h"]}}),
        )
        eventually(
            lambda: _spark_args(kube, ns, name)["--checkpoint-generation"] == "2", "children applied", operator=operator
        )
        time.sleep(0.5)  # the status write has been refused at least once by now
        assert _status(kube, ns, name)["observedGeneration"] == 1  # in the window: new children, old status
        operator.kill9()
    finally:
        kube.kubectl(
            "delete",
            f"validatingadmissionpolicybinding/{policy}",
            f"validatingadmissionpolicy/{policy}",
            "--ignore-not-found",
        )

    def status_writable() -> bool:
        result = kube.kubectl(
            "patch",
            f"cryptopipeline/{name}",
            "-n",
            ns,
            "--subresource=status",
            "--type=merge",
            "-p",
            '{"status":{"phase":"Pending"}}',
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return True

    eventually(status_writable, "admission policy lifted", timeout=20)
    operator.start()

    def converged() -> dict[str, Any]:
        st = _status(kube, ns, name)
        assert st.get("observedGeneration") == 2 and st.get("checkpointGeneration") == 2, st
        return st

    st = eventually(converged, "status converged after the restart", timeout=30, operator=operator)
    assert st["checkpointPath"].endswith("2")
    args = _spark_args(kube, ns, name)
    assert (args["--windows"], args["--checkpoint-generation"]) == ("1m,1h", "2"), args
    _exactly_one_set(kube, ns, name, uid)


@pytest.mark.parametrize(("policy", "kill_after_s"), [("Delete", 0.0), ("Delete", 0.1), ("Retain", 0.0)])
def test_operator_killed_mid_delete_converges(
    kube: KubeControlPlane,
    operator: OperatorProcess,
    kube_namespace: str,
    policy: str,
    kill_after_s: float,
    sink: dict[str, str],
) -> None:
    ns, name = kube_namespace, "del"
    uid = _create(kube, pipeline(name, ns, deletionPolicy=policy, sink=sink))
    eventually(lambda: _exactly_one_set(kube, ns, name, uid), "children applied", operator=operator)
    eventually(
        lambda: (get(kube, "CryptoPipeline", ns, name) or {})["metadata"].get("finalizers"),
        "finalizer",
        operator=operator,
    )

    kube.kubectl("delete", f"cryptopipeline/{name}", "-n", ns, "--wait=false")
    time.sleep(kill_after_s)
    operator.kill9()
    operator.start()

    eventually(
        lambda: get(kube, "CryptoPipeline", ns, name) is None,
        "finalizer removed, pipeline gone",
        timeout=30,
        operator=operator,
    )
    if policy == "Delete":
        eventually(lambda: _nothing_left(kube, ns, name), "children collected", timeout=30, operator=operator)
        return

    def only_topics_left() -> list[dict[str, Any]]:
        for kind in CHILD_KINDS:
            if kind != "KafkaTopic":
                assert not items(kube, kind, ns, f"app.kubernetes.io/instance={name}"), kind
        return items(kube, "KafkaTopic", ns, f"app.kubernetes.io/instance={name}")

    topics = eventually(only_topics_left, "all but the topics collected", timeout=30, operator=operator)
    assert sorted(t["metadata"]["name"] for t in topics) == [
        f"{name}-ingest-state",
        f"{name}-trades",
        f"{name}-trades-dlq",
    ]
    for topic in topics:
        assert not topic["metadata"].get("ownerReferences"), topic["metadata"]
        assert topic["metadata"]["annotations"]["strimzi.io/managed"] == "false"
