"""Two operator processes configured with the same Lease (two replicas of the chart's Deployment, a
rolling update, or two releases given one Lease): only the holder reconciles, the other waits
(live, but no watch and no write); when the holder is SIGKILLed the other takes the Lease over
once it expires and reconciles what changed meanwhile; a holder that stops cleanly gives the Lease
up. Against the real kube-apiserver, both operators real processes (issue 11, point 14)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import CHILD_KINDS, get, items
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube

LEASE = "cryptopipe-operator"
# short, for the test: taken over ~4 s after the holder's last renewal (the chart: 15 s)
LEASE_ENV = {
    "CRYPTOPIPE_OPERATOR_LEASE_NAME": LEASE,
    "CRYPTOPIPE_OPERATOR_LEASE_DURATION_S": "4",
    "CRYPTOPIPE_OPERATOR_LEASE_RENEW_DEADLINE_S": "3",
    "CRYPTOPIPE_OPERATOR_LEASE_RETRY_S": "0.5",
}
APPLIED = {"result": "applied"}


def _lease(kube: KubeControlPlane, namespace: str) -> dict[str, Any]:
    code, body = kube.api(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{LEASE}")
    assert code == 200, f"no Lease yet: HTTP {code}"
    spec: dict[str, Any] = json.loads(body)["spec"]
    return spec


def _holder(kube: KubeControlPlane, namespace: str) -> str | None:
    holder: str | None = _lease(kube, namespace).get("holderIdentity")
    return holder


def _reconciled(kube: KubeControlPlane, namespace: str, name: str) -> bool:
    missing = [kind for kind in CHILD_KINDS if not items(kube, kind, namespace, f"app.kubernetes.io/instance={name}")]
    assert not missing, f"children missing: {missing}"
    body = get(kube, "CryptoPipeline", namespace, name)
    assert body is not None
    status = body.get("status") or {}
    assert status.get("observedGeneration") == body["metadata"]["generation"], status
    return True


def _operator(kube: KubeControlPlane, log: Path, namespace: str) -> OperatorProcess:
    env = {**LEASE_ENV, "CRYPTOPIPE_OPERATOR_LEASE_NAMESPACE": namespace}
    return OperatorProcess(kube, log, env={**env, "CRYPTOPIPE_OPERATOR_NAMESPACES": json.dumps([namespace])})


def test_second_operator_waits_and_takes_over_when_the_leader_is_killed(
    kube: KubeControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    ns = kube_namespace
    first = _operator(kube, tmp_path / "first.log", ns)
    second = _operator(kube, tmp_path / "second.log", ns)
    try:
        first.start()
        eventually(
            lambda: _holder(kube, ns) == first.lease_identity, "the first operator holds the Lease", operator=first
        )
        second.start()  # returns once its liveness endpoint answers: a waiting replica is live

        kube.apply(pipeline("while-first-leads", ns))
        eventually(lambda: _reconciled(kube, ns, "while-first-leads"), "reconciled by the leader", operator=first)
        # the leader reconciled it; the waiting one wrote nothing: no reconcile, no kopf handler ran
        assert (first.metric("cryptopipe_operator_reconciles_total", **APPLIED) or 0) >= 1
        assert first.metric("cryptopipe_operator_leader") == 1
        assert second.metric("cryptopipe_operator_leader") == 0
        assert second.metric("cryptopipe_operator_reconciles_total", **APPLIED) == 0
        assert "apply_pipeline" not in second.log_text()
        assert _holder(kube, ns) == first.lease_identity

        first.kill9()  # no release: the Lease must expire first
        kube.apply(pipeline("after-first-died", ns))
        eventually(
            lambda: _holder(kube, ns) == second.lease_identity, "the second operator took the Lease", operator=second
        )
        eventually(lambda: _reconciled(kube, ns, "after-first-died"), "reconciled by the new leader", operator=second)
        assert second.metric("cryptopipe_operator_leader") == 1
        assert (second.metric("cryptopipe_operator_reconciles_total", **APPLIED) or 0) >= 1
        assert _lease(kube, ns)["leaseTransitions"] >= 1

        second.stop()  # SIGTERM: kopf stops, the Lease is released for the next replica at once
        assert _holder(kube, ns) is None
    finally:
        first.stop()
        second.stop()


def test_the_lease_is_owned_by_the_leader_election_role_and_goes_with_it(
    kube: KubeControlPlane, kube_namespace: str, tmp_path: Path
) -> None:
    """The operator makes the Lease, so nothing else would delete it: owned by the chart's
    leader-election Role, it is deleted by the garbage collector once the Role goes (helm uninstall)."""
    ns = kube_namespace
    role_name = "rel-cryptopipe-operator-leader-election"
    kube.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": role_name, "namespace": ns},
            "rules": [],
        }
    )
    role = get(kube, "Role", ns, role_name)
    assert role is not None
    env = {**LEASE_ENV, "CRYPTOPIPE_OPERATOR_LEASE_NAMESPACE": ns, "CRYPTOPIPE_OPERATOR_LEASE_OWNER_ROLE": role_name}
    operator = OperatorProcess(
        kube, tmp_path / "operator.log", env={**env, "CRYPTOPIPE_OPERATOR_NAMESPACES": json.dumps([ns])}
    )
    try:
        operator.start()
        eventually(
            lambda: _holder(kube, ns) == operator.lease_identity, "the operator holds the Lease", operator=operator
        )
    finally:
        operator.stop()  # released, not deleted: the next replica of a rollout takes it at once
    code, body = kube.api(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}")
    assert code == 200, body
    assert json.loads(body)["metadata"].get("ownerReferences") == [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "name": role_name,
            "uid": role["metadata"]["uid"],
        }
    ]
    kube.kubectl("-n", ns, "delete", "role", role_name)
    eventually(
        lambda: kube.api(f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/{LEASE}")[0] == 404,
        "the Lease deleted with its owner Role (kube-controller-manager's garbage collector)",
        timeout=180,
    )
