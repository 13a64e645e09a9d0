"""The operator survives a rotation of its ServiceAccount token: the credentials it started with are
revoked under the running process (the ServiceAccount deleted and re-created under the same name,
so every token of the old one is refused with a 401) and the new token written where its
kubeconfig points; a pipeline applied afterwards is still reconciled, by kopf (its watch, its
finalizer and progress patches) and by the operator's own calls (the children, the status).

Two ways the new token arrives, as kubeconfigs hold it: in a ``tokenFile`` (what a pod's projected
token looks like to a client) and inline (the kubeconfig file itself rewritten).

The ServiceAccount is bound to cluster-admin (what is proven here is authentication; the chart's
RBAC has its own test) and the operator watches only the test's namespace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cryptopipe_dev.stack.kube import KubeControlPlane
from tests.support.cryptopipelines import pipeline
from tests.support.kube_objects import CHILD_KINDS, items
from tests.support.operator_process import OperatorProcess, eventually

pytestmark = pytest.mark.kube


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)  # a reader sees the old content or the new, never half of one


def _kubeconfig(kube: KubeControlPlane, path: Path, user: dict[str, str]) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": kube.server, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "operator", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "operator"}}],
        "current-context": "test",
    }
    _write_atomically(path, json.dumps(config))


def _service_account(kube: KubeControlPlane, name: str, namespace: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}})


def _reconciled(kube: KubeControlPlane, namespace: str, name: str) -> bool:
    missing = [kind for kind in CHILD_KINDS if not items(kube, kind, namespace, f"app.kubernetes.io/instance={name}")]
    assert not missing, missing
    return True


@pytest.mark.parametrize("token_in", ["tokenFile", "kubeconfig"])
def test_operator_keeps_reconciling_after_its_token_is_rotated(
    kube: KubeControlPlane, kube_namespace: str, tmp_path: Path, token_in: str
) -> None:
    ns, sa = kube_namespace, "rotating-operator"
    binding = f"{ns}-{sa}"[:63]
    _service_account(kube, sa, ns)
    kube.kubectl("create", "clusterrolebinding", binding, "--clusterrole=cluster-admin", f"--serviceaccount={ns}:{sa}")
    token_file, kubeconfig = tmp_path / "token", tmp_path / "operator.kubeconfig"

    def hand_over(token: str) -> None:
        if token_in == "tokenFile":
            _write_atomically(token_file, token)
            _kubeconfig(kube, kubeconfig, {"tokenFile": str(token_file)})
        else:
            _kubeconfig(kube, kubeconfig, {"token": token})

    old_token = kube.create_token(sa, ns, duration="10m")
    hand_over(old_token)
    operator = OperatorProcess(
        kube, tmp_path / "operator.log", kubeconfig, env={"CRYPTOPIPE_OPERATOR_NAMESPACES": json.dumps([ns])}
    )
    try:
        operator.start()
        kube.apply(pipeline("before", ns))
        eventually(lambda: _reconciled(kube, ns, "before"), "children before the rotation", 60, operator)

        # the rotation: the old ServiceAccount's tokens revoked, a new one's handed over
        kube.kubectl("delete", "serviceaccount", sa, "-n", ns)
        _service_account(kube, sa, ns)
        hand_over(kube.create_token(sa, ns, duration="10m"))
        eventually(lambda: kube.api("/api", token=old_token)[0] == 401, "the old token refused", 30, operator)

        kube.apply(pipeline("after", ns))
        eventually(lambda: _reconciled(kube, ns, "after"), "children after the rotation", 60, operator)
        assert "credentials reloaded after HTTP 401" in operator.log_tail(400)
    finally:
        operator.stop()
        for name in ("before", "after"):
            kube.kubectl(
                "patch",
                "cryptopipeline",
                name,
                "-n",
                ns,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
        kube.kubectl("delete", "clusterrolebinding", binding, "--ignore-not-found", check=False)
